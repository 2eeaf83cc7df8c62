//! The gate of a UDP input with `allowed_sources`: packets from other addresses are refused
//! with a WARN, the others relayed to libavformat's reader on loopback. libavformat's reader
//! is connected to the relay's own socket, so nothing else can write to it.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::atomic::Ordering;

use super::gate::{self, Gate, RefusalLog};

/// Opens the gate of `url` (`udp://HOST:PORT?…`) and returns the URL libavformat reads.
/// `allowed` are the addresses whose packets are taken, `channel` names the channel in WARNs.
pub(super) fn open(
    url: &str,
    allowed: &[IpAddr],
    channel: &str,
    buffer_bytes: usize,
) -> Result<(String, Gate), String> {
    let (host, port, query) = gate::split_url(url, "udp")?;
    let public = gate::bind_public(host, port).map_err(|e| format!("{url}: {e}"))?;
    gate::set_receive_buffer(&public, buffer_bytes);
    let relay = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let relay_port = relay.local_addr().map_err(|e| e.to_string())?.port();
    let reader_port = gate::loopback_port().map_err(|e| e.to_string())?;
    relay
        .connect((Ipv4Addr::LOCALHOST, reader_port))
        .map_err(|e| e.to_string())?;
    // Options that would bind or filter the reader elsewhere are the gate's business now.
    let rest = gate::query_without(
        query,
        &[
            "localaddr",
            "localport",
            "local_port",
            "connect",
            "sources",
            "block",
            "reuse",
        ],
    );
    let internal = format!(
        "udp://127.0.0.1:{relay_port}?localaddr=127.0.0.1&localport={reader_port}&connect=1{}{rest}",
        if rest.is_empty() { "" } else { "&" }
    );
    let allowed = allowed.to_vec();
    let log = RefusalLog::new(channel, url);
    let gate = Gate::spawn("encore-udp-gate", move |stop| {
        let mut buf = vec![0u8; gate::MAX_DATAGRAM];
        while !stop.load(Ordering::SeqCst) {
            let (n, from) = match public.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if gate::timed_out(&e) => continue,
                Err(_) => continue, // an ICMP error for an earlier send; nothing to do
            };
            if allowed.iter().any(|a| same_host(*a, from.ip())) {
                // Refused before libavformat has bound its side: the packet is lost, as it
                // would be on a closed port.
                let _ = relay.send(&buf[..n]);
            } else {
                log.refuse(from, "its address is not in allowed_sources");
            }
        }
    })
    .map_err(|e| e.to_string())?;
    Ok((internal, gate))
}

/// The same host, an IPv4 address and its IPv6-mapped form alike.
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Allowed packets come out of the reader's port (connected to the relay, as libavformat's
    /// is); others do not.
    #[test]
    fn only_allowed_sources_are_relayed() {
        let port = gate::loopback_port().unwrap();
        let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
        let (internal, _gate) =
            open(&url, &["127.0.0.2".parse().unwrap()], "test", 1 << 20).unwrap();
        let (_, relay_port, query) = gate::split_url(&internal, "udp").unwrap();
        let reader_port: u16 = query
            .split('&')
            .find_map(|p| p.strip_prefix("localport="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(query.contains("pkt_size=1316"), "{internal}");
        let reader = UdpSocket::bind(("127.0.0.1", reader_port)).unwrap();
        reader.connect(("127.0.0.1", relay_port)).unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let friend = UdpSocket::bind("127.0.0.2:0").unwrap();
        stranger.send_to(b"stranger", ("127.0.0.1", port)).unwrap();
        friend.send_to(b"friend", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let n = reader.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"friend");
        assert!(reader.recv(&mut buf).is_err(), "only one packet relayed");
    }
}
