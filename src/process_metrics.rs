//! [I/O] The standard `process_*` metrics (what Prometheus' client libraries export, kube-vip's
//! included): CPU seconds, resident and virtual memory, open and maximum file descriptors and
//! the start time, read from `/proc/self` at each scrape. Parsing is pure and tested on fixed
//! texts; a file that cannot be read leaves its series out rather than reporting a wrong value.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// User and system CPU time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Start time after boot, in clock ticks.
    pub starttime: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
    /// Resident set size, pages.
    pub rss: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold spaces
/// and parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: at(14)?,
        stime: at(15)?,
        starttime: at(22)?,
        vsize: at(23)?,
        rss: at(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of open files from `/proc/<pid>/limits`; `None` when unlimited or absent.
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads `/proc/self` at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        let ticks = crate::sys::clock_ticks();
        let page = crate::sys::page_size();
        let mut gauge = |name: &str, help: &str, value: Option<f64>| match value {
            Some(v) => {
                let fam = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v).encode(fam)
            }
            None => Ok(()),
        };
        if let (Some(s), Some(t)) = (stat, ticks) {
            let btime = std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| parse_btime(&t));
            gauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                btime.map(|b| b as f64 + s.starttime as f64 / t as f64),
            )?;
        }
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            stat.zip(page).map(|(s, p)| (s.rss * p) as f64),
        )?;
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stat.map(|s| s.vsize as f64),
        )?;
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
        )?;
        gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|t| parse_max_fds(&t))
                .map(|v| v as f64),
        )?;
        if let (Some(s), Some(t)) = (stat, ticks) {
            let fam = enc.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new((s.utime + s.stime) as f64 / t as f64).encode(fam)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        let text = "4242 (vipd (a) b) S 1 4242 4242 0 -1 4194560 1335 0 0 0 250 75 0 0 20 0 \
                    9 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 \
                    17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321,
                rss: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (vipd) S 1"), None);
    }

    #[test]
    fn boot_time_and_the_open_files_limit() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nintr 5\nbtime 1796600000\nprocesses 9\n"),
            Some(1_796_600_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
    }

    #[test]
    fn this_process_reads_as_a_process() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let s = parse_stat(&text).expect("our own stat parses");
        assert!(s.rss > 0 && s.vsize > 0);
    }
}
