//! `lab arp-probe`: ARP requests for one address every few milliseconds until someone answers, run inside the
//! client's namespace by `lab kube-bench`. iputils' arping cannot send faster than once a second, which would
//! hide everything this benchmark measures.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use openelb_net::wire;
use openelb_net::wire::arp::{ArpRepr, Operation, parse_frame};
use openelb_net::wire::ethernet::{ETHERTYPE_ARP, EthernetRepr, MacAddr};

use crate::packet_socket::{PacketSocket, mac_of};

/// Sends a request for `target` from `source` on `iface` every `interval` until a reply from `target` arrives
/// (its time since the start) or `timeout` passes (`None`).
pub fn probe(
    iface: &str,
    source: Ipv4Addr,
    target: Ipv4Addr,
    interval: Duration,
    timeout: Duration,
) -> Result<Option<Duration>> {
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
            return Ok(Some(start.elapsed()));
        }
    }
    Ok(None)
}
