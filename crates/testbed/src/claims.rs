//! Judging a tcpdump capture of a LAN for "two MACs answering for one VIP at once": the
//! client's questions (rounds) and every frame that claims the VIP, from `tcpdump -tt -nn -e`.
//! Pure functions over the capture's text; [`crate::lan`] runs the capture.

use std::collections::BTreeSet;

/// One frame claiming the VIP: when (capture clock, seconds) and from which MAC.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub at: f64,
    pub mac: String,
}

/// From `tcpdump -tt -e -nn` lines: the client's questions for `vip` (round starts) and every
/// frame claiming `vip` (ARP reply or announcement; Neighbour Advertisement for it).
pub fn parse_capture(text: &str, vip: &str, client_mac: &str) -> (Vec<f64>, Vec<Claim>) {
    let mut rounds = Vec::new();
    let mut claims = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(at), Some(src)) = (w.next().and_then(|t| t.parse::<f64>().ok()), w.next()) else {
            continue;
        };
        let src = src.to_lowercase();
        // arping's requests print as "who-has VIP (ff:ff:ff:ff:ff:ff) tell 10.97.0.2".
        let asks = line.contains(&format!("who-has {vip} "));
        let question = (asks && line.contains("tell 10.97.0.2,"))
            || line.contains(&format!("neighbor solicitation, who has {vip},"));
        if question && src == client_mac {
            rounds.push(at);
            continue;
        }
        let claim = line.contains(&format!("Reply {vip} is-at"))
            || (asks && line.contains(&format!("tell {vip},")))
            || line.contains(&format!("neighbor advertisement, tgt is {vip},"));
        if claim && src != client_mac {
            claims.push(Claim { at, mac: src });
        }
    }
    (rounds, claims)
}

/// A new leader's first frame comes at least the probe time (250 ms) after the old leader's
/// last: rounds and windows below that can only hold two MACs if both hold the VIP.
pub const AT_ONCE: f64 = 0.2;

/// Claims of two MACs "at once", as readable lines: within one client round no longer than
/// [`AT_ONCE`] (longer rounds, when the asker was slow, are not judged by this rule), or any two
/// claims of different MACs less than [`AT_ONCE`] apart.
pub fn overlaps(rounds: &[f64], claims: &[Claim]) -> Vec<String> {
    let mut bad = Vec::new();
    for pair in rounds.windows(2).filter(|p| p[1] - p[0] <= AT_ONCE + 0.05) {
        let macs: BTreeSet<&str> = claims
            .iter()
            .filter(|c| c.at >= pair[0] && c.at < pair[1])
            .map(|c| c.mac.as_str())
            .collect();
        if macs.len() > 1 {
            bad.push(format!("round {:.3}..{:.3}: {macs:?}", pair[0], pair[1]));
        }
    }
    for (i, a) in claims.iter().enumerate() {
        for b in claims[i + 1..].iter().take_while(|b| b.at - a.at < AT_ONCE) {
            if b.mac != a.mac {
                bad.push(format!(
                    "{} at {:.3} and {} at {:.3}",
                    a.mac, a.at, b.mac, b.at
                ));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlap_rules_catch_two_macs_in_one_round_or_close_together_only() {
        let c = |at, mac: &str| Claim {
            at,
            mac: mac.into(),
        };
        assert!(overlaps(&[0.0, 0.2, 0.4], &[c(0.1, "a"), c(0.35, "b")]).is_empty());
        assert_eq!(
            overlaps(&[0.0, 0.2], &[c(0.01, "a"), c(0.15, "b")]).len(),
            2
        );
        assert_eq!(overlaps(&[], &[c(0.0, "a"), c(0.1, "b")]).len(), 1);
        // A slow round is not judged by the round rule; far-apart claims are fine.
        assert!(overlaps(&[0.0, 0.9], &[c(0.1, "a"), c(0.6, "b")]).is_empty());
    }
}
