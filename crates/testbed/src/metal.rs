//! A stand-in for the Equinix Metal API (unreachable from here): the documented JSON for one
//! project with one device and its BGP neighbours, over plain HTTP on a TCP listener. Each
//! request is answered and the connection closed. Impure.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const TOKEN: &str = "metal-token-do-not-log";
pub const PROJECT: &str = "8d4e2a1c-0000-4000-8000-000000000000";
pub const DEVICE: &str = "3b1c0000-0000-4000-8000-000000000001";

/// What the device and its neighbours look like.
#[derive(Clone)]
pub struct MetalWorld {
    pub hostname: String,
    /// The device's private IPv4 and its gateway (the peer routes go through it).
    pub private_ip: String,
    pub private_gateway: String,
    pub peer_ips: Vec<String>,
    pub md5: String,
}

pub struct MetalMock {
    pub port: u16,
    /// "METHOD /path" of every request, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl MetalMock {
    /// Listens on 0.0.0.0 (any port) in the current network namespace.
    pub async fn start(world: MetalWorld) -> MetalMock {
        let listener = TcpListener::bind("0.0.0.0:0")
            .await
            .expect("bind the Metal mock");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (world, log) = (world.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Requests here are small: read until the end of the headers (and a body).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let mut first = head.lines().next().unwrap_or_default().split(' ');
                    let method = first.next().unwrap_or_default().to_string();
                    let target = first.next().unwrap_or_default().to_string();
                    let path = target.split('?').next().unwrap_or_default().to_string();
                    let authorized = head.lines().any(|l| {
                        l.to_ascii_lowercase().starts_with("x-auth-token:") && l.contains(TOKEN)
                    });
                    log.lock().unwrap().push(format!("{method} {path}"));
                    let (status, body) = if authorized {
                        answer(&world, &method, &path)
                    } else {
                        (
                            401,
                            r#"{"errors":["Invalid authentication token"]}"#.to_string(),
                        )
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} Mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        MetalMock { port, requests }
    }
}

fn answer(w: &MetalWorld, method: &str, path: &str) -> (u16, String) {
    let p = |s: &str| format!("/metal/v1{s}");
    if method == "GET" && path == p(&format!("/projects/{PROJECT}/bgp-config")) {
        (200, r#"{"id":"c27a","status":"enabled","deployment_type":"local","asn":65000,"max_prefix":10,"ranges":[],"sessions":[]}"#.into())
    } else if method == "GET" && path == p(&format!("/projects/{PROJECT}/devices")) {
        (
            200,
            format!(
                r#"{{"devices":[{}],"meta":{{"current_page":1,"last_page":1,"total":1}}}}"#,
                device(w)
            ),
        )
    } else if method == "GET" && path == p(&format!("/devices/{DEVICE}")) {
        (200, device(w))
    } else if method == "POST" && path == p(&format!("/devices/{DEVICE}/bgp/sessions")) {
        (201, r#"{"id":"5f0d","status":"unknown","address_family":"ipv4","default_route":false,"learned_routes":[]}"#.into())
    } else if method == "GET" && path == p(&format!("/devices/{DEVICE}/bgp/neighbors")) {
        let peers: Vec<String> = w.peer_ips.iter().map(|ip| format!("\"{ip}\"")).collect();
        (
            200,
            format!(
                r#"{{"bgp_neighbors":[{{"address_family":4,"customer_as":65000,"customer_ip":"{}","md5_enabled":true,"md5_password":"{}","multihop":true,"peer_as":65530,"peer_ips":[{}],"routes_in":[],"routes_out":[]}}]}}"#,
                w.private_ip,
                w.md5,
                peers.join(",")
            ),
        )
    } else {
        (404, r#"{"errors":["Not found"]}"#.into())
    }
}

fn device(w: &MetalWorld) -> String {
    format!(
        r#"{{"id":"{DEVICE}","hostname":"{}","state":"active","ip_addresses":[{{"address_family":4,"public":false,"management":true,"address":"{}","gateway":"{}","network":"{}","cidr":24}}],"href":"/metal/v1/devices/{DEVICE}"}}"#,
        w.hostname, w.private_ip, w.private_gateway, w.private_gateway
    )
}
