//! [I/O] One task per claimed VIP: an AF_PACKET socket on the VIP's interface runs the pure
//! [`Announcer`]: probe, then (if nobody answered) the address goes on the interface, then
//! announcements until the task is aborted. The owner loop aborts the task and removes the
//! address when the VIP must go; the task never removes anything itself.

use super::announcer::{Announcer, Input, Output};
use super::frame::{Mac, ETHERTYPE_ARP, ETHERTYPE_IPV6};
use crate::netlink::VipAddresses;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// After a refused probe, probe again this often: the other holder may go away.
const REPROBE: Duration = Duration::from_secs(10);

/// How many link events may wait to be read. Frames from the LAN feed this queue (every frame
/// of another host claiming a VIP is a `Contested` event), so it is bounded: when full,
/// `Contested` events are dropped (logged, and nothing is decided from them), while the outcome
/// of a claim still gets through.
pub const LINK_EVENTS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The address is on the interface and announced.
    Claimed(IpAddr),
    /// The probe found `Mac` holding the VIP; vipd did not claim it.
    Refused(IpAddr, Mac),
    /// While announcing, another MAC claimed the VIP too.
    Contested(IpAddr, Mac),
    /// The socket or the address could not be set up.
    Failed(IpAddr, String),
}

/// Claims `vip` on `link`'s interface and announces it every `rate` until aborted.
pub async fn claim(
    vip: IpAddr,
    link: Arc<VipAddresses>,
    rate: Duration,
    events: mpsc::Sender<LinkEvent>,
) {
    if let Err(e) = run(vip, &link, rate, &events).await {
        warn!(%vip, interface = link.ifname(), "{e}");
        emit(&events, LinkEvent::Failed(vip, e));
    }
}

async fn run(
    vip: IpAddr,
    link: &VipAddresses,
    rate: Duration,
    events: &mpsc::Sender<LinkEvent>,
) -> Result<(), String> {
    let mac = Mac(link
        .mac()
        .ok_or_else(|| format!("interface {} has no MAC address", link.ifname()))?);
    let ethertype = if vip.is_ipv4() {
        ETHERTYPE_ARP
    } else {
        ETHERTYPE_IPV6
    };
    let socket = crate::sys::packet_socket(link.index(), ethertype)
        .map_err(|e| format!("cannot open a packet socket on {}: {e}", link.ifname()))?;
    // `AsyncFd::new` is deprecated because a *borrowed* fd could be closed behind tokio's
    // back; here AsyncFd owns the socket, so the fd lives exactly as long as the registration.
    #[allow(deprecated)]
    let socket = AsyncFd::new(socket).map_err(|e| format!("packet socket: {e}"))?;
    let mut reported: Option<Mac> = None;
    loop {
        let (mut announcer, outs) = Announcer::start(vip, mac, rate, Instant::now());
        let mut timer = Instant::now();
        let mut queue = std::collections::VecDeque::from(outs);
        let mut buf = vec![0u8; 2048];
        loop {
            while let Some(out) = queue.pop_front() {
                match out {
                    Output::Send(frame) => {
                        if let Err(e) = send(&socket, &frame).await {
                            debug!(%vip, "cannot send: {e}");
                        }
                    }
                    Output::Arm(at) => timer = at,
                    Output::AddAddress => {
                        link.add(vip).await.map_err(|e| e.to_string())?;
                        info!(%vip, interface = link.ifname(), "VIP claimed: nobody answered the probe");
                        emit(events, LinkEvent::Claimed(vip));
                        queue.extend(announcer.handle(Input::AddressAdded, Instant::now()));
                    }
                    Output::Refused(other) => {
                        if reported != Some(other) {
                            warn!(%vip, %other, "another host answers for the VIP: not claiming it");
                            emit(events, LinkEvent::Refused(vip, other));
                            reported = Some(other);
                        }
                    }
                    Output::Contested(other) => {
                        warn!(%vip, %other, "another host also announces the VIP");
                        emit(events, LinkEvent::Contested(vip, other));
                    }
                }
            }
            if announcer.is_refused() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(timer.into()) => {
                    queue.extend(announcer.handle(Input::Timer, Instant::now()));
                }
                r = socket.readable() => {
                    let mut guard = r.map_err(|e| format!("packet socket: {e}"))?;
                    // Drain everything queued; each frame goes to the announcer.
                    loop {
                        match guard.try_io(|s| recv(s.get_ref(), &mut buf)) {
                            Ok(Ok(n)) => queue.extend(announcer.handle(Input::Frame(&buf[..n]), Instant::now())),
                            Ok(Err(e)) => return Err(format!("packet socket: {e}")),
                            Err(_would_block) => break,
                        }
                    }
                }
            }
        }
        tokio::time::sleep(REPROBE).await;
    }
}

/// Sends `ev` without waiting: a `Contested` event is dropped when the queue is full; an
/// outcome waits for room on its own task, so frames keep being read.
fn emit(events: &mpsc::Sender<LinkEvent>, ev: LinkEvent) {
    match events.try_send(ev) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(LinkEvent::Contested(vip, _))) => {
            debug!(%vip, "link events queue full: a contesting frame's event is dropped");
        }
        Err(mpsc::error::TrySendError::Full(outcome)) => {
            let events = events.clone();
            tokio::spawn(async move {
                let _ = events.send(outcome).await;
            });
        }
    }
}

fn recv(socket: &socket2::Socket, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut s = socket;
    s.read(buf)
}

async fn send(socket: &AsyncFd<socket2::Socket>, frame: &[u8]) -> std::io::Result<()> {
    loop {
        let mut guard = socket.writable().await?;
        match guard.try_io(|s| s.get_ref().send(frame)) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}
