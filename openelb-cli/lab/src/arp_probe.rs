//! `lab arp-probe`: ARP requests for one address every few milliseconds until someone answers, run inside the
//! client's namespace by `lab kube-bench`. iputils' arping cannot send faster than once a second, which would
//! hide everything this benchmark measures.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use openelb_net::wire;
use openelb_net::wire::arp::{ArpRepr, Operation, parse_frame};
use openelb_net::wire::ethernet::{ETHERTYPE_ARP, EthernetRepr, MacAddr};

use crate::packet_socket::{PacketSocket, mac_of};

/// The first reply from the probed address.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    /// Since the probe started.
    pub after: Duration,
    /// When it arrived, in microseconds since the Unix epoch.
    pub at_unix_us: u128,
}

/// Sends a request for `target` from `source` on `iface` every `interval` until a reply from `target` arrives
/// or `timeout` passes (`None`).
pub fn probe(
    iface: &str,
    source: Ipv4Addr,
    target: Ipv4Addr,
    interval: Duration,
    timeout: Duration,
) -> Result<Option<Reply>> {
    let mac = mac_of(iface)?;
    // Receives wait at most 1 ms, so requests keep going out on time.
    let sock = PacketSocket::open(iface, Some((ETHERTYPE_ARP, Duration::from_millis(1))))?;
    let request = ArpRepr {
        operation: Operation::Request,
        sender_mac: mac,
        sender_ip: source,
        target_mac: MacAddr::ZERO,
        target_ip: target,
    };
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: mac, ethertype: ETHERTYPE_ARP };
    let frame = wire::encode(&eth, (), &wire::encode(&request, (), &[])?)?;
    let start = Instant::now();
    let mut next = start;
    let mut buf = [0u8; 2048];
    while start.elapsed() < timeout {
        if Instant::now() >= next {
            sock.send(&frame).context("sending an ARP request")?;
            next += interval;
        }
        let Some(received) = sock.recv(&mut buf) else { continue };
        if let Ok((_, arp)) = parse_frame(received)
            && arp.operation == Operation::Reply
            && arp.sender_ip == target
        {
            let at_unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
            return Ok(Some(Reply { after: start.elapsed(), at_unix_us }));
        }
    }
    Ok(None)
}
