//! [pure] NOTIFICATION messages (RFC 4271 §4.5) kept as numbers: a peer may send any code and
//! subcode (RFC 9687's Send Hold Timer Expired, a Cease subcode assigned after we were built),
//! and the operator must see exactly what it sent. Names come from the IANA registry where one
//! is assigned; anything else is shown by number.

use std::fmt;

/// RFC 4271 §4.5 error codes vipd sends or names.
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

/// RFC 4271 §4.1: the longest BGP message without RFC 8654's Extended Message capability,
/// which vipd does not advertise.
pub const MAX_MESSAGE: usize = 4096;

/// One NOTIFICATION: what a peer sent us, or what we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// The body of a received NOTIFICATION (the bytes after the 19-byte header). A body shorter
    /// than the two code octets is kept as far as it goes: RFC 4271 §6 forbids answering a
    /// NOTIFICATION, so a truncated one is still the peer's last word, never an error to send.
    pub fn from_body(body: &[u8]) -> Received {
        match body {
            [] => Received::Truncated(None),
            [code] => Received::Truncated(Some(*code)),
            [code, subcode, data @ ..] => Received::Whole(Notification::new(*code, *subcode, data)),
        }
    }

    /// The whole message, header included, at most [`MAX_MESSAGE`] octets: data that quotes a
    /// whole message (RFC 7313's malformed ROUTE-REFRESH, up to 4096 octets itself) is cut to
    /// fit, as a peer without the Extended Message capability would refuse anything longer.
    pub fn encode(&self) -> Vec<u8> {
        let data = &self.data[..self.data.len().min(MAX_MESSAGE - 21)];
        let len = 21 + data.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&[0xff; 16]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(3);
        out.push(self.code);
        out.push(self.subcode);
        out.extend_from_slice(data);
        out
    }

    /// The RFC 8203/9003 shutdown communication of an Administrative Shutdown or Reset.
    pub fn shutdown_text(&self) -> Option<String> {
        if self.code != code::CEASE || !matches!(self.subcode, 2 | 4) {
            return None;
        }
        let (len, text) = self.data.split_first()?;
        let text = text.get(..usize::from(*len)).filter(|t| !t.is_empty())?;
        Some(String::from_utf8_lossy(text).into_owned())
    }

    /// "Cease", "UPDATE Message Error", or `None` for an unassigned code.
    pub fn code_name(&self) -> Option<&'static str> {
        Some(match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            8 => "Send Hold Timer Expired",
            _ => return None,
        })
    }

    /// The subcode's IANA name, `None` when unassigned for this code.
    pub fn subcode_name(&self) -> Option<&'static str> {
        Some(match (self.code, self.subcode) {
            (1..=8, 0) => "Unspecific",
            (1, 1) => "Connection Not Synchronized",
            (1, 2) => "Bad Message Length",
            (1, 3) => "Bad Message Type",
            (2, 1) => "Unsupported Version Number",
            (2, 2) => "Bad Peer AS",
            (2, 3) => "Bad BGP Identifier",
            (2, 4) => "Unsupported Optional Parameter",
            (2, 6) => "Unacceptable Hold Time",
            (2, 7) => "Unsupported Capability",
            (2, 11) => "Role Mismatch",
            (3, 1) => "Malformed Attribute List",
            (3, 2) => "Unrecognized Well-known Attribute",
            (3, 3) => "Missing Well-known Attribute",
            (3, 4) => "Attribute Flags Error",
            (3, 5) => "Attribute Length Error",
            (3, 6) => "Invalid ORIGIN Attribute",
            (3, 8) => "Invalid NEXT_HOP Attribute",
            (3, 9) => "Optional Attribute Error",
            (3, 10) => "Invalid Network Field",
            (3, 11) => "Malformed AS_PATH",
            (5, 1) => "Receive Unexpected Message in OpenSent State",
            (5, 2) => "Receive Unexpected Message in OpenConfirm State",
            (5, 3) => "Receive Unexpected Message in Established State",
            (6, 1) => "Maximum Number of Prefixes Reached",
            (6, 2) => "Administrative Shutdown",
            (6, 3) => "Peer De-configured",
            (6, 4) => "Administrative Reset",
            (6, 5) => "Connection Rejected",
            (6, 6) => "Other Configuration Change",
            (6, 7) => "Connection Collision Resolution",
            (6, 8) => "Out of Resources",
            (6, 9) => "Hard Reset",
            (6, 10) => "BFD Down",
            (7, 1) => "Invalid Message Length",
            _ => return None,
        })
    }
}

/// What a peer's NOTIFICATION said, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Whole(Notification),
    /// Shorter than its two code octets; the code when there was one.
    Truncated(Option<u8>),
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Received::Whole(n) => n.fmt(f),
            Received::Truncated(None) => write!(f, "(empty: no error code)"),
            Received::Truncated(Some(c)) => {
                let n = Notification::new(*c, 0, []);
                match n.code_name() {
                    Some(name) => write!(f, "{name} ({c}, truncated: no subcode)"),
                    None => write!(f, "code {c} (unassigned, truncated: no subcode)"),
                }
            }
        }
    }
}

/// `Cease/Administrative Shutdown (6/2): "maintenance"`, `code 42/1 (unassigned)`: the names
/// when assigned, always the numbers, then the shutdown text or the first data octets in hex.
impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s) = (self.code, self.subcode);
        match (self.code_name(), self.subcode_name()) {
            (Some(code), Some(sub)) => write!(f, "{code}/{sub} ({c}/{s})")?,
            (Some(code), None) => write!(f, "{code}/unassigned subcode ({c}/{s})")?,
            (None, _) => write!(f, "unassigned code ({c}/{s})")?,
        }
        if let Some(text) = self.shutdown_text() {
            return write!(f, ": {text:?}");
        }
        if !self.data.is_empty() {
            let shown = &self.data[..self.data.len().min(32)];
            let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
            let more = if shown.len() < self.data.len() {
                "…"
            } else {
                ""
            };
            write!(f, ", data {hex}{more}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found writing the bgp_session fuzz target: a malformed ROUTE-REFRESH of 4096 octets, quoted
    /// whole, made a NOTIFICATION of 4117.
    #[test]
    fn a_notification_quoting_a_whole_message_is_cut_to_the_largest_message() {
        let quoted = vec![0xab; MAX_MESSAGE];
        let wire = Notification::new(code::ROUTE_REFRESH, 1, quoted).encode();
        assert_eq!(wire.len(), MAX_MESSAGE);
        assert_eq!(u16::from_be_bytes([wire[16], wire[17]]), 4096);
        let short = Notification::new(code::CEASE, 2, vec![3, b'b', b'y', b'e']).encode();
        assert_eq!(short.len(), 25);
        assert_eq!(&short[21..], &[3, b'b', b'y', b'e']);
    }

    #[test]
    fn known_codes_are_named_with_their_numbers() {
        assert_eq!(
            Notification::new(6, 2, *b"\x0bmaintenance").to_string(),
            "Cease/Administrative Shutdown (6/2): \"maintenance\""
        );
        assert_eq!(
            Notification::new(8, 0, []).to_string(),
            "Send Hold Timer Expired/Unspecific (8/0)"
        );
        assert_eq!(
            Notification::new(3, 5, [0x40, 3, 5]).to_string(),
            "UPDATE Message Error/Attribute Length Error (3/5), data 400305"
        );
    }

    #[test]
    fn unassigned_codes_and_subcodes_are_shown_by_number() {
        assert_eq!(
            Notification::new(6, 42, []).to_string(),
            "Cease/unassigned subcode (6/42)"
        );
        assert_eq!(
            Notification::new(0, 0, []).to_string(),
            "unassigned code (0/0)"
        );
        assert_eq!(
            Notification::new(200, 9, []).to_string(),
            "unassigned code (200/9)"
        );
    }

    #[test]
    fn truncated_notifications_are_read_as_far_as_they_go() {
        assert_eq!(Notification::from_body(&[]), Received::Truncated(None));
        assert_eq!(
            Notification::from_body(&[6]).to_string(),
            "Cease (6, truncated: no subcode)"
        );
        assert_eq!(
            Notification::from_body(&[6, 3]),
            Received::Whole(Notification::new(6, 3, []))
        );
    }

    #[test]
    fn a_shutdown_text_longer_than_its_data_is_not_read_past_the_end() {
        assert_eq!(
            Notification::new(6, 2, [200, b'a']).shutdown_text(),
            None,
            "length 200 with one byte of text"
        );
        assert_eq!(Notification::new(6, 4, [0]).shutdown_text(), None);
    }

    #[test]
    fn encoding_is_the_rfc_4271_layout() {
        let bytes = Notification::new(5, 3, [2]).encode();
        let mut want = vec![0xff; 16];
        want.extend_from_slice(&[0, 22, 3, 5, 3, 2]);
        assert_eq!(bytes, want);
    }
}
