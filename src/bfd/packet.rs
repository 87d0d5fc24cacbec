//! [pure] The BFD Control packet (RFC 5880 §4.1): encoding, and decoding with the checks of
//! §6.8.6 that need no session. vipd uses no authentication, so a packet with the A bit is
//! refused here (§6.8.6: "If the A bit is set and no authentication is in use … MUST be
//! discarded").

use std::fmt;

/// The mandatory section's length; vipd sends nothing more.
pub const LEN: usize = 24;

/// UDP destination port of single-hop BFD (RFC 5881 §4).
pub const PORT_SINGLE_HOP: u16 = 3784;
/// UDP destination port of multihop BFD (RFC 5883 §5).
pub const PORT_MULTIHOP: u16 = 4784;
/// Source ports come from this range (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The session state (RFC 5880 §4.1 "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(v: u8) -> State {
        match v & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The diagnostic code (RFC 5880 §4.1 "Diag"): why the sender's session last left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Diag(pub u8);

impl Diag {
    pub const NONE: Diag = Diag(0);
    pub const DETECTION_TIME_EXPIRED: Diag = Diag(1);
    pub const NEIGHBOR_SIGNALED_DOWN: Diag = Diag(3);
    pub const ADMINISTRATIVELY_DOWN: Diag = Diag(7);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "no diagnostic",
            1 => "control detection time expired",
            2 => "echo function failed",
            3 => "neighbor signaled session down",
            4 => "forwarding plane reset",
            5 => "path down",
            6 => "concatenated path down",
            7 => "administratively down",
            8 => "reverse concatenated path down",
            _ => "unknown diagnostic",
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A Control packet without authentication section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub diag: Diag,
    pub state: State,
    /// P: the sender asks for a packet with F in return.
    pub poll: bool,
    /// F: the answer to a P.
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: demand mode (vipd never asks for it).
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    /// Microseconds.
    pub desired_min_tx: u32,
    /// Microseconds.
    pub required_min_rx: u32,
    /// Microseconds; vipd sends 0 (no Echo function).
    pub required_min_echo_rx: u32,
}

/// Why a received datagram is not a Control packet vipd accepts (each is a "MUST be
/// discarded" of RFC 5880 §6.8.6 or a wrong TTL of RFC 5881 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("{0} bytes, shorter than a Control packet (24)")]
    Short(usize),
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("length field {field} with {got} bytes received")]
    Length { field: u8, got: usize },
    #[error("detect multiplier 0")]
    ZeroMultiplier,
    #[error("the multipoint bit is set")]
    Multipoint,
    #[error("my discriminator 0")]
    ZeroMyDiscriminator,
    #[error("your discriminator 0 in state {0}")]
    ZeroYourDiscriminator(State),
    #[error("authenticated, and vipd uses no authentication")]
    Authenticated,
    #[error("your discriminator {0} is not this session's")]
    NotOurs(u32),
    #[error("received with TTL {0}; single-hop BFD takes only 255 (RFC 5881 §5)")]
    Ttl(u8),
}

impl Discard {
    /// A short name for metrics and status.
    pub fn label(&self) -> &'static str {
        match self {
            Discard::Short(_) | Discard::Length { .. } => "length",
            Discard::Version(_) => "version",
            Discard::ZeroMultiplier => "zero_multiplier",
            Discard::Multipoint => "multipoint",
            Discard::ZeroMyDiscriminator | Discard::ZeroYourDiscriminator(_) => {
                "zero_discriminator"
            }
            Discard::Authenticated => "authenticated",
            Discard::NotOurs(_) => "not_ours",
            Discard::Ttl(_) => "ttl",
        }
    }
}

impl Packet {
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (1 << 5) | (self.diag.0 & 0x1f);
        b[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx.to_be_bytes());
        b
    }

    /// Decodes one datagram, applying every check of §6.8.6 that does not need the session.
    pub fn decode(b: &[u8]) -> Result<Packet, Discard> {
        if b.len() < LEN {
            return Err(Discard::Short(b.len()));
        }
        let version = b[0] >> 5;
        if version != 1 {
            return Err(Discard::Version(version));
        }
        let auth = b[1] & 0x04 != 0;
        let length = b[3];
        let min = if auth { LEN + 2 } else { LEN };
        if usize::from(length) < min || usize::from(length) > b.len() {
            return Err(Discard::Length {
                field: length,
                got: b.len(),
            });
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let p = Packet {
            diag: Diag(b[0] & 0x1f),
            state: State::from_bits(b[1] >> 6),
            poll: b[1] & 0x20 != 0,
            final_: b[1] & 0x10 != 0,
            control_plane_independent: b[1] & 0x08 != 0,
            demand: b[1] & 0x02 != 0,
            detect_mult: b[2],
            my_discriminator: u32_at(4),
            your_discriminator: u32_at(8),
            desired_min_tx: u32_at(12),
            required_min_rx: u32_at(16),
            required_min_echo_rx: u32_at(20),
        };
        if p.detect_mult == 0 {
            return Err(Discard::ZeroMultiplier);
        }
        if b[1] & 0x01 != 0 {
            return Err(Discard::Multipoint);
        }
        if p.my_discriminator == 0 {
            return Err(Discard::ZeroMyDiscriminator);
        }
        if p.your_discriminator == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            return Err(Discard::ZeroYourDiscriminator(p.state));
        }
        if auth {
            return Err(Discard::Authenticated);
        }
        Ok(p)
    }
}

/// RFC 5881 §5 (GTSM, RFC 5082): a single-hop packet must arrive with TTL 255, so it cannot
/// have been sent from further away; multihop takes any TTL (RFC 5883 §5 leaves it to
/// configuration).
pub fn check_ttl(multihop: bool, ttl: Option<u8>) -> Result<(), Discard> {
    match ttl {
        Some(t) if !multihop && t != 255 => Err(Discard::Ttl(t)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Packet {
        Packet {
            diag: Diag::NONE,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 0x0a0b_0c0d,
            desired_min_tx: 300_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
        }
    }

    #[test]
    fn encodes_the_rfc_layout_byte_for_byte() {
        let b = sample().encode();
        assert_eq!(
            b,
            [
                0x20, 0xe0, 3, 24, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0x04, 0x93, 0xe0, 0,
                0x04, 0x93, 0xe0, 0, 0, 0, 0
            ]
        );
        assert_eq!(Packet::decode(&b), Ok(sample()));
    }

    #[test]
    fn every_field_round_trips() {
        let p = Packet {
            diag: Diag::ADMINISTRATIVELY_DOWN,
            state: State::AdminDown,
            poll: false,
            final_: true,
            control_plane_independent: true,
            demand: true,
            detect_mult: 255,
            my_discriminator: u32::MAX,
            your_discriminator: 0,
            desired_min_tx: 1,
            required_min_rx: u32::MAX,
            required_min_echo_rx: 7,
        };
        assert_eq!(Packet::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn the_discard_rules_of_6_8_6() {
        let good = sample().encode();
        let with = |f: &dyn Fn(&mut [u8; LEN])| {
            let mut b = good;
            f(&mut b);
            Packet::decode(&b)
        };
        assert_eq!(Packet::decode(&good[..23]), Err(Discard::Short(23)));
        assert_eq!(with(&|b| b[0] = 0x40), Err(Discard::Version(2)));
        assert_eq!(
            with(&|b| b[3] = 23),
            Err(Discard::Length { field: 23, got: 24 })
        );
        assert_eq!(
            with(&|b| b[3] = 25),
            Err(Discard::Length { field: 25, got: 24 })
        );
        assert_eq!(with(&|b| b[2] = 0), Err(Discard::ZeroMultiplier));
        assert_eq!(with(&|b| b[1] |= 1), Err(Discard::Multipoint));
        assert_eq!(
            with(&|b| b[4..8].fill(0)),
            Err(Discard::ZeroMyDiscriminator)
        );
        assert_eq!(
            with(&|b| b[8..12].fill(0)),
            Err(Discard::ZeroYourDiscriminator(State::Up))
        );
        // Down with your discriminator 0 is how every session starts.
        assert!(with(&|b| {
            b[8..12].fill(0);
            b[1] = State::Down as u8 * 64;
        })
        .is_ok());
        // The A bit needs an authentication section; with or without, vipd refuses it.
        assert!(matches!(with(&|b| b[1] |= 4), Err(Discard::Length { .. })));
        let mut long = good.to_vec();
        long.extend([1, 2]);
        long[1] |= 4;
        long[3] = 26;
        assert_eq!(Packet::decode(&long), Err(Discard::Authenticated));
        // Bytes past the length field (padding) are ignored.
        let mut padded = good.to_vec();
        padded.extend([0; 8]);
        assert_eq!(Packet::decode(&padded), Ok(sample()));
    }

    #[test]
    fn single_hop_takes_only_ttl_255() {
        assert_eq!(check_ttl(false, Some(255)), Ok(()));
        assert_eq!(check_ttl(false, Some(254)), Err(Discard::Ttl(254)));
        assert_eq!(check_ttl(true, Some(3)), Ok(()));
        assert_eq!(check_ttl(false, None), Ok(()));
    }
}
