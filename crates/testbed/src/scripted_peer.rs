//! A scripted BGP peer for fault injection: it speaks just enough BGP, byte by byte and written
//! here independently of vipd's encoder, to take a session to any state and then misbehave —
//! close with a FIN or an RST and no NOTIFICATION, send malformed UPDATEs, unknown
//! NOTIFICATIONs, ROUTE-REFRESH oddities, a second connection. Plus the real `vipd manager`
//! binary, started unprivileged against it over loopback TCP, and `vipd status` to read what
//! an operator would. Impure (sockets, processes).

use crate::vipd_bin;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PEER_AS: u32 = 65530;
pub const VIPD_AS: u32 = 65000;
pub const VIP: &str = "198.18.0.10/32";

/// One message read off the wire: its type and its body (after the 19-byte header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// (code, subcode, data) of a NOTIFICATION.
    pub fn notification(&self) -> Option<(u8, u8, Vec<u8>)> {
        (self.kind == 3 && self.body.len() >= 2)
            .then(|| (self.body[0], self.body[1], self.body[2..].to_vec()))
    }

    /// The IPv4 prefixes announced in an UPDATE's NLRI field, as "a.b.c.d/len".
    pub fn announced_v4(&self) -> Vec<String> {
        if self.kind != 2 {
            return vec![];
        }
        let b = &self.body;
        let wrl = usize::from(u16::from_be_bytes([b[0], b[1]]));
        let tpal = usize::from(u16::from_be_bytes([b[2 + wrl], b[3 + wrl]]));
        let mut nlri = &b[4 + wrl + tpal..];
        let mut out = Vec::new();
        while let [bits, rest @ ..] = nlri {
            let n = usize::from(*bits).div_ceil(8);
            let mut a = [0u8; 4];
            a[..n].copy_from_slice(&rest[..n]);
            out.push(format!("{}/{bits}", Ipv4Addr::from(a)));
            nlri = &rest[n..];
        }
        out
    }
}

/// Builds one BGP message.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

pub fn keepalive() -> Vec<u8> {
    message(4, &[])
}

/// Our OPEN: AS_TRANS-free 2-octet AS, hold 90, MP IPv4 unicast, route refresh, 4-octet AS.
pub fn open() -> Vec<u8> {
    let caps = [
        1, 4, 0, 1, 0, 1, // MP IPv4 unicast
        2, 0, // route refresh
        65, 4, 0, 0, 0xff, 0xfa, // 4-octet AS 65530
    ];
    let mut body = vec![4];
    body.extend_from_slice(&(PEER_AS as u16).to_be_bytes());
    body.extend_from_slice(&90u16.to_be_bytes());
    body.extend_from_slice(&[10, 255, 0, 2]);
    body.push((caps.len() + 2) as u8);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    message(1, &body)
}

/// An attribute: flags, type, length (two octets when flags has Extended Length, 0x10), value.
pub fn attr(flags: u8, t: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, t];
    if flags & 0x10 != 0 {
        a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        a.push(value.len() as u8);
    }
    a.extend_from_slice(value);
    a
}

/// An UPDATE announcing 10.1.2.0/24 with ORIGIN, a 4-octet AS_PATH [65530], NEXT_HOP, then
/// `extra` attributes, the attribute list as given.
pub fn update_with(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut attrs = vec![
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &[2, 1, 0, 0, 0xff, 0xfa]),
        attr(0x40, 3, &[127, 0, 0, 1]),
    ];
    attrs.extend_from_slice(extra);
    update_raw(&[], &attrs.concat(), &[24, 10, 1, 2])
}

pub fn update_raw(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = (withdrawn.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    message(2, &body)
}

/// One TCP connection with vipd.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// How a wait for a message ended without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMsg {
    Eof,
    Reset,
    Timeout,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to vipd");
    }

    /// The next message, within `within`.
    pub fn recv(&mut self, within: Duration) -> Result<Msg, NoMsg> {
        let deadline = Instant::now() + within;
        loop {
            if self.buf.len() >= 19 {
                let len = usize::from(u16::from_be_bytes([self.buf[16], self.buf[17]]));
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Ok(Msg {
                        kind: frame[18],
                        body: frame[19..].to_vec(),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoMsg::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(NoMsg::Eof),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(NoMsg::Reset),
                Err(e) => panic!("read from vipd: {e}"),
            }
        }
    }

    /// The next message that is not a KEEPALIVE.
    pub fn recv_skipping_keepalives(&mut self, within: Duration) -> Result<Msg, NoMsg> {
        let deadline = Instant::now() + within;
        loop {
            let m = self.recv(deadline.saturating_duration_since(Instant::now()))?;
            if m.kind != 4 {
                return Ok(m);
            }
        }
    }

    /// Reads vipd's OPEN (it sends it first on every connection).
    pub fn expect_open(&mut self) {
        let m = self.recv(Duration::from_secs(5)).expect("vipd's OPEN");
        assert_eq!(m.kind, 1, "vipd's first message is its OPEN: {m:?}");
    }

    /// From a fresh connection to Established: vipd's OPEN, ours, both KEEPALIVEs.
    pub fn establish(&mut self) {
        self.expect_open();
        self.send(&open());
        let m = self.recv(Duration::from_secs(5)).expect("vipd's KEEPALIVE");
        assert_eq!(m.kind, 4, "KEEPALIVE after our OPEN: {m:?}");
        self.send(&keepalive());
    }

    /// After [`Conn::establish`]: the UPDATEs up to End-of-RIB carry vipd's VIP.
    pub fn expect_vip(&mut self) {
        let mut got = Vec::new();
        loop {
            let m = self
                .recv_skipping_keepalives(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("UPDATEs from vipd: {e:?}, got {got:?}"));
            assert_eq!(m.kind, 2, "{m:?}");
            if m.body == [0, 0, 0, 0] {
                break; // End-of-RIB
            }
            got.extend(m.announced_v4());
        }
        assert_eq!(got, [VIP], "vipd's table");
    }

    /// Half-close with a FIN and no NOTIFICATION, as a stopped process does.
    pub fn fin(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Abort with an RST and no NOTIFICATION, as a rebooted router or a middlebox does.
    pub fn rst(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
        drop(self.stream);
    }

    /// Nothing but KEEPALIVEs arrive for `quiet` and the connection stays open.
    pub fn stays_up(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) if m.kind == 4 => self.send(&keepalive()),
                Ok(m) => panic!("expected only KEEPALIVEs, got {m:?}"),
                Err(NoMsg::Timeout) => return,
                Err(e) => panic!("the session ended: {e:?}"),
            }
        }
    }

    /// vipd's NOTIFICATION (skipping KEEPALIVEs), then the end of the connection.
    pub fn expect_notification(&mut self) -> (u8, u8, Vec<u8>) {
        let m = self
            .recv_skipping_keepalives(Duration::from_secs(5))
            .expect("a NOTIFICATION from vipd");
        let n = m
            .notification()
            .unwrap_or_else(|| panic!("not a NOTIFICATION: {m:?}"));
        self.expect_closed(Duration::from_secs(5));
        n
    }

    /// The connection ends (FIN or RST) within `within`, with nothing more from vipd.
    pub fn expect_closed(&mut self, within: Duration) {
        match self.recv(within) {
            Err(NoMsg::Eof | NoMsg::Reset) => {}
            other => panic!("expected vipd to close the connection, got {other:?}"),
        }
    }
}

/// Free loopback ports: bound, read and released (the small race is harmless on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The real `vipd manager` (unprivileged, static VIP [`VIP`]) peering with 127.0.0.1.
pub struct Vipd {
    child: Child,
    log: PathBuf,
    http: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Vipd {
    /// Active: vipd connects to `peer_port`. Passive: vipd listens on the returned
    /// [`Vipd::listen`] port. `extra` settings are appended.
    pub fn start(peer_port: Option<u16>, extra: &[(&str, &str)]) -> (Vipd, Option<u16>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("vipd.log");
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (peers, listen) = match peer_port {
            Some(p) => (format!("127.0.0.1:{PEER_AS}::false:{p}"), None),
            None => (format!("127.0.0.1:{PEER_AS}"), Some(free_port())),
        };
        let mut env: Vec<(String, String)> = vec![
            ("bgp_enable".into(), "true".into()),
            ("bgp_as".into(), VIPD_AS.to_string()),
            ("bgp_routerid".into(), "10.255.0.1".into()),
            ("bgp_peers".into(), peers),
            ("vip_address".into(), VIP.trim_end_matches("/32").into()),
            ("prometheus_server".into(), http.to_string()),
            ("vip_loglevel".into(), "debug".into()),
        ];
        if let Some(port) = listen {
            env.push(("bgp_passive".into(), "true".into()));
            env.push(("bgp_listen_port".into(), port.to_string()));
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(vipd_bin())
            .arg("manager")
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start vipd");
        let vipd = Vipd {
            child,
            log,
            http,
            _dir: dir,
        };
        (vipd, listen)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `vipd status -o json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(vipd_bin())
            .args(["status", "--server", &self.http.to_string(), "-o", "json"])
            .output()
            .expect("run vipd status");
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// The one peer's entry of `vipd status`, once the agent answers.
    pub fn peer(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if let Some(p) = s["peers"].get(0) {
                return p.clone();
            }
            assert!(
                Instant::now() < deadline,
                "vipd status never answered:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A plain HTTP GET of the agent's endpoint: (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match TcpStream::connect(self.http) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "the agent's HTTP endpoint never answered: {e}\n{}",
                    self.log()
                ),
            }
        };
        write!(s, "GET {path} HTTP/1.0\r\nHost: vipd\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (code, body)
    }
}

impl Drop for Vipd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
