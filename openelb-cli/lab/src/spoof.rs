//! Spoofed and malformed VRRPv3 adverts, as a host on the LAN that is no node can send them: built with
//! openelb-net's codecs (so a well-formed spoof is exactly what a speaker would send), then damaged on purpose
//! for the malformed kinds, and sent as whole Ethernet frames from an `AF_PACKET` socket inside the sender's
//! namespace at a steady rate.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use openelb_core::vrrp::Advert;
use openelb_core::vrrp::consts::{PROTOCOL, TTL};
use openelb_net::wire::ethernet::{ETHERTYPE_IPV4, EthernetRepr, MacAddr};
use openelb_net::wire::ipv4::Ipv4Repr;
use openelb_net::wire::vrrp::{self, field};
use openelb_net::wire::{self, checksum};

use crate::in_netns;
use crate::packet_socket::PacketSocket;

/// The IPv4 VRRP group, 224.0.0.18.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// How a malformed advert is damaged. Each must be dropped by a receiver before it reaches VRRP's logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The VRRP checksum does not match.
    BadChecksum,
    /// The message ends inside its address list (the IP header's length is consistent with what is sent).
    Truncated,
    /// Well formed, but with IP TTL 254: it crossed a router (RFC 5798 §7.1).
    Ttl254,
    /// VRRP version 2 in a message that is otherwise a valid version-3 advert (checksum recomputed).
    WrongVersion,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::BadChecksum, Fault::Truncated, Fault::Ttl254, Fault::WrongVersion];
}

/// One advert from a spoofed source: to the VRRP group, or to one host's address and MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spoof {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dst_mac: MacAddr,
    pub advert: Advert,
    pub fault: Option<Fault>,
}

impl Spoof {
    /// To 224.0.0.18, as every VRRP router sends.
    pub fn to_group(src: Ipv4Addr, advert: Advert) -> Spoof {
        Spoof { src, dst: GROUP, dst_mac: MacAddr::ipv4_multicast(GROUP), advert, fault: None }
    }

    /// To one host, as a unicast VRRP peer sends.
    pub fn to_host(src: Ipv4Addr, dst: Ipv4Addr, dst_mac: MacAddr, advert: Advert) -> Spoof {
        Spoof { src, dst, dst_mac, advert, fault: None }
    }

    pub fn with_fault(mut self, fault: Fault) -> Spoof {
        self.fault = Some(fault);
        self
    }

    /// The whole Ethernet frame, sent from `src_mac`.
    pub fn frame(&self, src_mac: MacAddr) -> Result<Vec<u8>> {
        let (src, dst) = (IpAddr::V4(self.src), IpAddr::V4(self.dst));
        let mut message = wire::encode(&self.advert, vrrp::Context::new(src, dst), &[])
            .map_err(|e| anyhow!("advert {:?}: {e}", self.advert))?;
        let mut ttl = TTL;
        match self.fault {
            None => {}
            Some(Fault::BadChecksum) => {
                if let Some(c) = message.get_mut(field::CHECKSUM.start) {
                    *c ^= 0x5a;
                }
            }
            Some(Fault::Truncated) => message.truncate(message.len().saturating_sub(3)),
            Some(Fault::Ttl254) => ttl = TTL - 1,
            Some(Fault::WrongVersion) => {
                if let Some(b) = message.get_mut(field::VERSION_TYPE) {
                    *b = (2 << 4) | vrrp::TYPE_ADVERTISEMENT;
                }
                fix_checksum(&mut message, self.src, self.dst)?;
            }
        }
        let ip = Ipv4Repr {
            src: self.src,
            dst: self.dst,
            protocol: PROTOCOL,
            ttl,
            dscp_ecn: vrrp::TOS,
            payload_len: message.len(),
        };
        let packet = wire::encode(&ip, (), &message).map_err(|e| anyhow!("IPv4 header: {e}"))?;
        let eth = EthernetRepr { dst: self.dst_mac, src: src_mac, ethertype: ETHERTYPE_IPV4 };
        wire::encode(&eth, (), &packet).map_err(|e| anyhow!("Ethernet header: {e}"))
    }
}

/// Rewrites the VRRP checksum of `message` (keepalived's IPv4 pseudo-header form, the one we send).
fn fix_checksum(message: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<()> {
    let len = u16::try_from(message.len()).context("VRRP message longer than 64 KiB")?;
    let field = message.get_mut(field::CHECKSUM).ok_or_else(|| anyhow!("VRRP message shorter than its header"))?;
    field.copy_from_slice(&[0, 0]);
    let sum = checksum::finish(checksum::sum(checksum::pseudo_header_v4(src, dst, PROTOCOL, len), message));
    if let Some(field) = message.get_mut(field::CHECKSUM) {
        field.copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}

/// What a flood is made of: adverts that look valid (random VRIDs with ours among them, random priorities and
/// intervals, varying address lists sometimes carrying our VIPs, to the group or to a node) and, as many,
/// malformed ones of every [`Fault`], all from sources that are no node.
#[derive(Debug, Clone)]
pub struct FloodMix {
    pub our_vrid: u8,
    pub our_vips: Vec<Ipv4Addr>,
    /// Unicast targets: the nodes' addresses and MACs.
    pub nodes: Vec<(Ipv4Addr, MacAddr)>,
    /// Spoofed sources.
    pub sources: Vec<Ipv4Addr>,
    pub seed: u64,
}

/// SplitMix64: a fixed sequence from a seed, so every flood of one mix is the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for a traffic mix (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

impl FloodMix {
    /// `count` adverts, the even ones valid-looking, the odd ones malformed (the faults in turn).
    pub fn adverts(&self, count: usize) -> Vec<Spoof> {
        let mut rng = Rng(self.seed);
        (0..count).map(|i| self.one(&mut rng, i)).collect()
    }

    fn one(&self, rng: &mut Rng, i: usize) -> Spoof {
        let vrid = if rng.below(4) == 0 { self.our_vrid } else { rng.byte().max(1) };
        let mut addresses: Vec<IpAddr> =
            (0..1 + rng.below(6)).map(|_| IpAddr::V4(Ipv4Addr::new(192, 0, 2, rng.byte()))).collect();
        if rng.below(5) == 0
            && let Some(vip) = self.our_vips.get(rng.below(self.our_vips.len()))
        {
            addresses.push(IpAddr::V4(*vip));
        }
        addresses.sort();
        addresses.dedup();
        let max_advert_int = u16::try_from(1 + rng.below(4095)).unwrap_or(100);
        let advert = Advert { vrid, priority: rng.byte(), max_advert_int, addresses };
        let src = self.sources.get(rng.below(self.sources.len())).copied().unwrap_or(Ipv4Addr::new(192, 0, 2, 250));
        let spoof = match (rng.below(4), self.nodes.get(rng.below(self.nodes.len()))) {
            (0, Some((ip, mac))) => Spoof::to_host(src, *ip, *mac, advert),
            _ => Spoof::to_group(src, advert),
        };
        if i.is_multiple_of(2) { spoof } else { spoof.with_fault(Fault::ALL[(i / 2) % Fault::ALL.len()]) }
    }
}

/// What a paced send did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SendReport {
    pub sent: u64,
    /// Frames the kernel refused (a full queue under a flood); not retried.
    pub failed: u64,
    pub elapsed: Duration,
}

/// An `AF_PACKET` sender on a host's interface, opened inside its namespace.
#[derive(Debug)]
pub struct Sender {
    sock: PacketSocket,
    mac: MacAddr,
}

/// Sleeps at least this long between batches, so a high rate costs the sender ~1000 wake-ups a second.
const MIN_SLEEP: Duration = Duration::from_millis(1);

impl Sender {
    /// Opens the socket on `iface` inside namespace `ns`; frames go out from `mac` (the host's own).
    pub fn open_in(ns: &str, iface: &str, mac: MacAddr) -> Result<Sender> {
        let iface_owned = iface.to_string();
        let sock = in_netns::call_in(ns, move || PacketSocket::open(&iface_owned, None))
            .with_context(|| format!("raw socket on {iface} in {ns}"))?;
        Ok(Sender { sock, mac })
    }

    /// The frames of `spoofs`, from this sender's MAC.
    pub fn frames(&self, spoofs: &[Spoof]) -> Result<Vec<Vec<u8>>> {
        spoofs.iter().map(|s| s.frame(self.mac)).collect()
    }

    /// Sends `frames` in turn (cycling) at `rate` per second for `duration`, in batches.
    pub fn send_paced(&self, frames: &[Vec<u8>], rate: f64, duration: Duration) -> SendReport {
        let mut report = SendReport::default();
        if frames.is_empty() || rate <= 0.0 {
            return report;
        }
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let start = Instant::now();
        let mut next = 0usize;
        loop {
            let elapsed = start.elapsed();
            let due = ((rate * elapsed.as_secs_f64()) as u64 + 1).min(total);
            while report.sent + report.failed < due {
                match self.sock.send(&frames[next % frames.len()]) {
                    Ok(()) => report.sent += 1,
                    Err(_) => report.failed += 1,
                }
                next = next.wrapping_add(1);
            }
            if report.sent + report.failed >= total {
                break;
            }
            let at = Duration::from_secs_f64((report.sent + report.failed) as f64 / rate);
            std::thread::sleep(at.saturating_sub(start.elapsed()).max(MIN_SLEEP));
        }
        report.elapsed = start.elapsed();
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openelb_core::vrrp::Received;
    use openelb_net::wire::ethernet::HEADER_LEN;
    use openelb_net::wire::vrrp::{V4Checksum, receive_ipv4};

    fn advert() -> Advert {
        Advert { vrid: 38, priority: 255, max_advert_int: 4095, addresses: vec!["192.0.2.91".parse().unwrap()] }
    }

    fn decode(frame: &[u8]) -> Result<Received, openelb_net::wire::WireError> {
        receive_ipv4(&frame[HEADER_LEN..], V4Checksum::PseudoHeader)
    }

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfa]);

    #[test]
    fn a_well_formed_spoof_decodes_as_the_advert_it_carries() {
        let frame = Spoof::to_group(SRC, advert()).frame(MAC).unwrap();
        assert_eq!(&frame[..6], &MacAddr::ipv4_multicast(GROUP).0);
        assert_eq!(&frame[6..12], &MAC.0);
        let rx = decode(&frame).unwrap();
        assert_eq!((rx.src, rx.dst, rx.ttl), (IpAddr::V4(SRC), IpAddr::V4(GROUP), TTL));
        assert_eq!(rx.advert, advert());

        let node = MacAddr([0x52, 0x54, 0x22, 0x37, 0x6c, 0x7b]);
        let dst = Ipv4Addr::new(192, 0, 2, 4);
        let frame = Spoof::to_host(SRC, dst, node, advert()).frame(MAC).unwrap();
        assert_eq!(&frame[..6], &node.0);
        assert_eq!(decode(&frame).unwrap().dst, IpAddr::V4(dst));
    }

    #[test]
    fn every_fault_makes_a_frame_a_receiver_must_drop() {
        for fault in Fault::ALL {
            let frame = Spoof::to_group(SRC, advert()).with_fault(fault).frame(MAC).unwrap();
            match (fault, decode(&frame)) {
                (Fault::Ttl254, Ok(rx)) => assert_eq!(rx.ttl, TTL - 1),
                (Fault::Ttl254, Err(e)) => panic!("TTL 254 must still decode: {e}"),
                (_, Ok(rx)) => panic!("{fault:?} decoded: {rx:?}"),
                (_, Err(_)) => {}
            }
        }
    }

    #[test]
    fn a_flood_mixes_valid_looking_and_malformed_adverts_deterministically() {
        let mix = FloodMix {
            our_vrid: 38,
            our_vips: vec![Ipv4Addr::new(192, 0, 2, 91)],
            nodes: vec![(Ipv4Addr::new(192, 0, 2, 4), MAC)],
            sources: vec![SRC, Ipv4Addr::new(192, 0, 2, 251)],
            seed: 7,
        };
        let adverts = mix.adverts(400);
        assert_eq!(adverts, mix.adverts(400));
        let valid: Vec<&Spoof> = adverts.iter().filter(|s| s.fault.is_none()).collect();
        assert_eq!(valid.len(), 200);
        assert!(valid.iter().any(|s| s.advert.vrid == 38) && valid.iter().any(|s| s.advert.vrid != 38));
        assert!(valid.iter().any(|s| s.dst == GROUP) && valid.iter().any(|s| s.dst != GROUP));
        assert!(valid.iter().any(|s| s.advert.addresses.contains(&"192.0.2.91".parse().unwrap())));
        for fault in Fault::ALL {
            assert_eq!(adverts.iter().filter(|s| s.fault == Some(fault)).count(), 50, "{fault:?}");
        }
        for s in &adverts {
            let frame = s.frame(MAC).unwrap();
            if s.fault.is_none() {
                assert_eq!(decode(&frame).unwrap().advert, s.advert);
            }
        }
    }
}
