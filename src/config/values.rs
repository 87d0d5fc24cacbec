//! [pure] Values with a syntax of their own: VIP lists, kube-vip's log levels, listen addresses.

use super::{err, ConfigError};
use std::net::{IpAddr, SocketAddr};

/// A list of VIPs, comma or newline separated (`#` starts a comment). Addresses that cannot be
/// a unicast host route are refused by name.
pub fn parse_vip_list(text: &str, source: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let mut out = Vec::new();
    let multiline = text.contains('\n');
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        for item in line.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // Built only on error: a 100,000-line VIP file must not format 100,000 strings.
            let at = || {
                if multiline {
                    format!("{source} line {}", n + 1)
                } else {
                    source.to_owned()
                }
            };
            // A 10 MB line is named by its head, not echoed whole.
            let ip: IpAddr = item.parse().map_err(|_| {
                err(
                    &at(),
                    &crate::note::bounded(item, 128),
                    "is not an IP address",
                )
            })?;
            if ip.is_unspecified() {
                return Err(err(
                    &at(),
                    item,
                    "asks for a DHCP address, which only services mode offers",
                ));
            }
            let bad = match ip {
                IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast() || v4.is_loopback(),
                IpAddr::V6(v6) => v6.is_multicast() || v6.is_loopback(),
            };
            if bad {
                return Err(err(
                    &at(),
                    item,
                    "is not a unicast address that can be announced",
                ));
            }
            out.push(ip);
        }
    }
    Ok(out)
}

/// kube-vip's `vip_loglevel` as a `tracing` filter. Numbers are on the slog scale kube-vip uses
/// since v0.8.10 (its docs say "-4 for debugging"): a record is logged when its level is at
/// least the number, and slog's levels are debug −4, info 0, warn 4, error 8. So ≤ −4 is debug,
/// −3…0 info, 1…4 warn, 5 and up error (above 8 kube-vip logs nothing; vipd keeps its errors).
/// The names (error, warn, info, debug, trace) are accepted too.
pub(super) fn log_filter(v: Option<&str>) -> Result<String, ConfigError> {
    let v = v.map(str::trim).unwrap_or("");
    let level =
        match v {
            "" | "info" => "info",
            "error" | "fatal" | "panic" => "error",
            "warn" | "warning" => "warn",
            "debug" => "debug",
            "trace" => "trace",
            number => match number.parse::<i64>() {
                Ok(n) if n <= -4 => "debug",
                Ok(n) if n <= 0 => "info",
                Ok(n) if n <= 4 => "warn",
                Ok(_) => "error",
                Err(_) => return Err(err(
                    "vip_loglevel (--log)",
                    number,
                    "is not a log level (a slog number as kube-vip reads it: -4 debug, 0 info, \
                     4 warn, 8 error; or error, warn, info, debug, trace)",
                )),
            },
        };
    Ok(level.to_owned())
}

/// `:2112` / `0.0.0.0:2112` / `[::1]:2112` as a socket address. An empty or unspecified host
/// is every address of both families, as Go's `net.Listen("tcp", ":2112")` (kube-vip's) takes
/// it: `[::]`, which Linux serves dual-stack ([`crate::http::serve`] falls back to `0.0.0.0`
/// where IPv6 is off).
pub fn listen_address(spec: &str) -> Option<SocketAddr> {
    let (host, port) = spec.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "" | "0.0.0.0" | "::" => "::",
        host => host,
    };
    Some(SocketAddr::new(ip.parse().ok()?, port))
}
