//! [pure] Claiming and announcing one VIP on one link (RFC 5227 for IPv4; the same schedule
//! with DAD solicitations and unsolicited Neighbour Advertisements for IPv6):
//!
//! 1. **Probe**: [`PROBE_NUM`] probes [`PROBE_INTERVAL`] apart, then [`PROBE_WAIT`] for
//!    answers. Another MAC claiming the VIP meanwhile → [`Output::Refused`] and nothing more.
//! 2. **Claim**: [`Output::AddAddress`]; the driver adds the address, then feeds
//!    [`Input::AddressAdded`] (an announcement before the address exists would pull traffic
//!    to a node that does not answer for it).
//! 3. **Announce**: [`ANNOUNCE_NUM`] announcements [`ANNOUNCE_INTERVAL`] apart (RFC 5227
//!    §1.1), then one every `rate` (`vip_arpRate`) for as long as the VIP is held, so caches
//!    that missed the first ones (a switch port that came up late) learn it anyway.
//!
//! Timing: RFC 5227's probe phase (PROBE_WAIT up to 1 s, 3 probes 1–2 s apart, ANNOUNCE_WAIT
//! 2 s: up to ~7 s) would eat the whole failover budget (lease duration + 1 s): a new leader
//! may claim only after the old one's lease expired, and every second of probing is a second
//! the VIP answers nowhere. Here probes go out at 0, 75 and 150 ms and the claim follows at
//! 250 ms. On one L2 segment a holder answers a probe in well under a millisecond, so three
//! chances within 250 ms still find any live holder; what they cannot find (a holder that is down) cannot
//! answer traffic either.

use super::frame::{self, Mac};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const PROBE_NUM: u32 = 3;
pub const PROBE_INTERVAL: Duration = Duration::from_millis(75);
/// After the last probe: how long answers are awaited.
pub const PROBE_WAIT: Duration = Duration::from_millis(100);
/// RFC 5227 §1.1 ANNOUNCE_NUM and ANNOUNCE_INTERVAL.
pub const ANNOUNCE_NUM: u32 = 2;
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// The armed timer fired.
    Timer,
    /// A frame arrived on the link.
    Frame(&'a [u8]),
    /// The driver put the VIP on the interface.
    AddressAdded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(Vec<u8>),
    /// Call back with [`Input::Timer`] at this instant (replaces any earlier timer).
    Arm(Instant),
    /// The probe found nobody: add the address now.
    AddAddress,
    /// The probe found `mac` holding the VIP: vipd does not claim it.
    Refused(Mac),
    /// While announcing, `mac` also claimed the VIP (reported once per MAC). vipd keeps the VIP
    /// (its Lease says it is the holder) and keeps announcing.
    Contested(Mac),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Probing { sent: u32 },
    Claiming,
    Announcing { sent: u32 },
    Refused,
}

#[derive(Debug, Clone)]
pub struct Announcer {
    vip: IpAddr,
    mac: Mac,
    rate: Duration,
    state: State,
    contested: Vec<Mac>,
}

impl Announcer {
    /// Starts probing for `vip` from `mac`: the first probe goes out now.
    pub fn start(vip: IpAddr, mac: Mac, rate: Duration, now: Instant) -> (Announcer, Vec<Output>) {
        let a = Announcer {
            vip,
            mac,
            rate,
            state: State::Probing { sent: 1 },
            contested: Vec::new(),
        };
        let out = vec![
            Output::Send(frame::probe(mac, vip)),
            Output::Arm(now + PROBE_INTERVAL),
        ];
        (a, out)
    }

    pub fn is_refused(&self) -> bool {
        self.state == State::Refused
    }

    pub fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Output> {
        match (self.state.clone(), input) {
            (State::Probing { .. }, Input::Frame(f)) => {
                match frame::claim_by_other(f, self.mac, self.vip) {
                    Some(mac) => {
                        self.state = State::Refused;
                        vec![Output::Refused(mac)]
                    }
                    None => Vec::new(),
                }
            }
            (State::Probing { sent }, Input::Timer) if sent < PROBE_NUM => {
                self.state = State::Probing { sent: sent + 1 };
                let wait = if sent + 1 == PROBE_NUM {
                    PROBE_WAIT
                } else {
                    PROBE_INTERVAL
                };
                vec![
                    Output::Send(frame::probe(self.mac, self.vip)),
                    Output::Arm(now + wait),
                ]
            }
            (State::Probing { .. }, Input::Timer) => {
                self.state = State::Claiming;
                vec![Output::AddAddress]
            }
            (State::Claiming, Input::AddressAdded) => self.announce(0, now),
            (State::Announcing { sent }, Input::Timer) => self.announce(sent, now),
            (State::Announcing { .. }, Input::Frame(f)) => {
                match frame::claim_by_other(f, self.mac, self.vip) {
                    Some(mac) if !self.contested.contains(&mac) => {
                        self.contested.push(mac);
                        vec![Output::Contested(mac)]
                    }
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    fn announce(&mut self, sent: u32, now: Instant) -> Vec<Output> {
        let sent = sent.saturating_add(1);
        self.state = State::Announcing { sent };
        let next = if sent < ANNOUNCE_NUM {
            ANNOUNCE_INTERVAL
        } else {
            self.rate
        };
        vec![
            Output::Send(frame::announcement(self.mac, self.vip)),
            Output::Arm(now + next),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const OTHER: Mac = Mac([2, 0, 0, 0, 0, 0x99]);

    fn vip() -> IpAddr {
        "10.97.0.50".parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn probe() -> Output {
        Output::Send(frame::probe(MAC, vip()))
    }

    fn announcement() -> Output {
        Output::Send(frame::announcement(MAC, vip()))
    }

    #[test]
    fn a_quiet_link_gets_three_probes_then_the_address_then_announcements_at_the_rfc_then_the_configured_pace(
    ) {
        let t0 = Instant::now();
        let (mut a, out) = Announcer::start(vip(), MAC, ms(3000), t0);
        assert_eq!(out, [probe(), Output::Arm(t0 + ms(75))]);
        assert_eq!(
            a.handle(Input::Timer, t0 + ms(75)),
            [probe(), Output::Arm(t0 + ms(150))]
        );
        assert_eq!(
            a.handle(Input::Timer, t0 + ms(150)),
            [probe(), Output::Arm(t0 + ms(250))]
        );
        assert_eq!(a.handle(Input::Timer, t0 + ms(250)), [Output::AddAddress]);
        // Nothing is announced before the address is there.
        assert_eq!(a.handle(Input::Timer, t0 + ms(300)), []);
        assert_eq!(
            a.handle(Input::AddressAdded, t0 + ms(260)),
            [announcement(), Output::Arm(t0 + ms(2260))]
        );
        assert_eq!(
            a.handle(Input::Timer, t0 + ms(2260)),
            [announcement(), Output::Arm(t0 + ms(5260))]
        );
        assert_eq!(
            a.handle(Input::Timer, t0 + ms(5260)),
            [announcement(), Output::Arm(t0 + ms(8260))]
        );
    }

    #[test]
    fn an_answer_from_another_mac_during_the_probe_refuses_the_claim_for_good() {
        let t0 = Instant::now();
        let (mut a, _) = Announcer::start(vip(), MAC, ms(3000), t0);
        let reply = frame::arp_announcement(OTHER, "10.97.0.50".parse().unwrap());
        assert_eq!(
            a.handle(Input::Frame(&reply), t0 + ms(10)),
            [Output::Refused(OTHER)]
        );
        assert!(a.is_refused());
        assert_eq!(a.handle(Input::Timer, t0 + ms(75)), []);
        assert_eq!(a.handle(Input::AddressAdded, t0 + ms(80)), []);
    }

    #[test]
    fn our_own_probe_looped_back_is_not_an_answer() {
        let t0 = Instant::now();
        let (mut a, _) = Announcer::start(vip(), MAC, ms(3000), t0);
        let own = frame::probe(MAC, vip());
        assert_eq!(a.handle(Input::Frame(&own), t0 + ms(1)), []);
        assert!(!a.is_refused());
    }

    #[test]
    fn another_claimer_while_announcing_is_reported_once_and_announcing_goes_on() {
        let t0 = Instant::now();
        let (mut a, _) = Announcer::start(vip(), MAC, ms(3000), t0);
        for t in [75, 150, 250] {
            a.handle(Input::Timer, t0 + ms(t));
        }
        a.handle(Input::AddressAdded, t0 + ms(260));
        let other = frame::arp_announcement(OTHER, "10.97.0.50".parse().unwrap());
        assert_eq!(
            a.handle(Input::Frame(&other), t0 + ms(300)),
            [Output::Contested(OTHER)]
        );
        assert_eq!(a.handle(Input::Frame(&other), t0 + ms(310)), []);
        assert_eq!(
            a.handle(Input::Timer, t0 + ms(2260)),
            [announcement(), Output::Arm(t0 + ms(5260))]
        );
    }
}
