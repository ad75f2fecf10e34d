//! How long one node takes to make many VIPs answer once it decides to take them over: the speaker's Linux
//! backend adds them all (`NetOps::add_vips`, as the driver does for every group of one takeover) and sends
//! one gratuitous ARP / unsolicited NA per VIP (the first round of the bursts), on a namespace LAN with a
//! client. Printed: decision → last address added, → last announcement sent, → the client received the
//! announcement of every VIP; then the client asks for every VIP (ARP request / neighbor solicitation) and
//! counts the answers. A measurement, not a test: nothing is asserted.
//!
//! Run (root): `cargo run --release --example takeover -- [VIPS] [v6|v4] [batched|one-by-one]` (defaults 5000,
//! v6, batched; IPv4 holds at most 254 VIPs, from 198.51.100.0/24). `one-by-one` adds the VIPs as the driver
//! did before, one netlink round trip each. Namespaces `oelb-<pid>-takeover-*`, removed at the end.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use openelb::net::linux::LinuxNet;
use openelb::net::ops::{IfaceSpec, NetOps};
use openelb::net::wire::arp::{self, ArpRepr, Operation};
use openelb::net::wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use openelb::net::wire::icmpv6::{self, Context as NdpContext, NdpRepr, NeighborSolicit};
use openelb::net::wire::ipv6::{Ipv6Repr, NEXT_HEADER_ICMPV6};
use openelb_lab::in_netns;
use openelb_lab::packet_socket::PacketSocket;
use openelb_lab::segment::{HostSpec, Segment, test_prefix};

const NODE_MAC: &str = "02:42:c0:00:02:03";
const CLIENT_MAC: &str = "02:42:c0:00:02:64";
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0x93, 0, 0, 0xffff, 1);
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// How long the client listens for announcements after the decision.
const LISTEN: Duration = Duration::from_secs(60);

struct Args {
    vips: Vec<IpAddr>,
    batched: bool,
}

fn args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let count: usize = it.next().map(|s| s.parse()).transpose().context("VIPS must be a number")?.unwrap_or(5000);
    let v6 = match it.next().as_deref() {
        None | Some("v6") => true,
        Some("v4") => false,
        Some(other) => bail!("family {other:?}: v6 or v4"),
    };
    let batched = match it.next().as_deref() {
        None | Some("batched") => true,
        Some("one-by-one") => false,
        Some(other) => bail!("{other:?}: batched or one-by-one"),
    };
    let vips: Vec<IpAddr> = if v6 {
        let first = u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0x93, 0, 0, 0, 1));
        (0..count as u128).map(|i| IpAddr::V6(Ipv6Addr::from(first + i))).collect()
    } else {
        if count > 254 {
            bail!("IPv4 takes at most 254 VIPs (198.51.100.1-254)");
        }
        (1..=count as u8).map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i))).collect()
    };
    Ok(Args { vips, batched })
}

/// What the node did, by the monotonic clock every thread of this process shares.
struct NodeTimes {
    decision: Instant,
    added: Instant,
    announced: Instant,
    failed: usize,
}

fn take_over(ns: &str, vips: Vec<IpAddr>, batched: bool) -> Result<NodeTimes> {
    in_netns::run_in(ns, move || async move {
        let net = LinuxNet::new().map_err(|e| anyhow!("{e}"))?;
        let nic = net.resolve(&IfaceSpec::Name("eth0".into())).await.map_err(|e| anyhow!("{e}"))?;
        let mac = nic.mac.ok_or_else(|| anyhow!("eth0 has no MAC"))?;
        let decision = Instant::now();
        let failed = if batched {
            net.add_vips(&nic, &vips).await.iter().filter(|r| r.is_err()).count()
        } else {
            let mut failed = 0;
            for ip in &vips {
                failed += usize::from(net.add_vip(&nic, *ip).await.is_err());
            }
            failed
        };
        let added = Instant::now();
        for ip in &vips {
            net.announce(&nic, *ip, mac).await.map_err(|e| anyhow!("{e}"))?;
        }
        Ok(NodeTimes { decision, added, announced: Instant::now(), failed })
    })
}

/// The VIP a gratuitous ARP or unsolicited NA from `mac` announces.
fn announced(frame: &[u8], mac: MacAddr) -> Option<IpAddr> {
    if let Ok((eth, a)) = arp::parse_frame(frame) {
        return (eth.src == mac && a.sender_ip == a.target_ip).then_some(IpAddr::V4(a.sender_ip));
    }
    let f = icmpv6::parse_frame(frame).ok()?;
    match f.ndp {
        NdpRepr::Advert(na) if f.ethernet.src == mac && !na.solicited => Some(IpAddr::V6(na.target)),
        _ => None,
    }
}

/// The VIP a reply to one of our requests is for: an ARP reply or a solicited NA.
fn answered(frame: &[u8]) -> Option<IpAddr> {
    if let Ok((_, a)) = arp::parse_frame(frame) {
        return (a.operation == Operation::Reply).then_some(IpAddr::V4(a.sender_ip));
    }
    let f = icmpv6::parse_frame(frame).ok()?;
    match f.ndp {
        NdpRepr::Advert(na) if na.solicited => Some(IpAddr::V6(na.target)),
        _ => None,
    }
}

/// The client's request for `vip`: an ARP request, or a neighbor solicitation to its solicited-node group.
fn request(vip: IpAddr, mac: MacAddr) -> Result<Vec<u8>> {
    use openelb::net::wire::encode;
    Ok(match vip {
        IpAddr::V4(target) => {
            let req = ArpRepr {
                operation: Operation::Request,
                sender_mac: mac,
                sender_ip: CLIENT_V4,
                target_mac: MacAddr::ZERO,
                target_ip: target,
            };
            let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: mac, ethertype: ETHERTYPE_ARP };
            encode(&eth, (), &encode(&req, (), &[])?)?
        }
        IpAddr::V6(target) => {
            let o = target.octets();
            let group =
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]));
            let ns = NdpRepr::Solicit(NeighborSolicit { target, source_mac: Some(mac) });
            let icmp = encode(&ns, NdpContext { src: CLIENT_V6, dst: group }, &[])?;
            let ip = Ipv6Repr {
                src: CLIENT_V6,
                dst: group,
                next_header: NEXT_HEADER_ICMPV6,
                hop_limit: icmpv6::HOP_LIMIT,
                payload_len: icmp.len(),
            };
            let eth = EthernetRepr { dst: MacAddr::ipv6_multicast(group), src: mac, ethertype: ETHERTYPE_IPV6 };
            encode(&eth, (), &encode(&ip, (), &icmp)?)?
        }
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = args()?;
    let n = args.vips.len();
    let v6 = args.vips.first().is_some_and(IpAddr::is_ipv6);
    let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_ARP };
    let base = test_prefix("takeover");
    let host = |name: &str, mac: &str, addrs: Vec<String>| HostSpec {
        name: name.into(),
        ns: format!("{base}-{name}"),
        mac: mac.into(),
        addrs,
    };
    let segment = Segment::with_hosts(
        &format!("{base}-sw"),
        vec![
            host("node", NODE_MAC, vec!["192.0.2.3/24".into(), "2001:db8:0:93::ffff:2/64".into()]),
            host("client", CLIENT_MAC, vec![format!("{CLIENT_V4}/24"), format!("{CLIENT_V6}/64")]),
        ],
    )?;
    let node_ns = format!("{base}-node");
    let client_ns = format!("{base}-client");
    let node_mac: MacAddr = NODE_MAC.parse().map_err(|e| anyhow!("{e:?}"))?;
    let client_mac: MacAddr = CLIENT_MAC.parse().map_err(|e| anyhow!("{e:?}"))?;

    // The client listens before the node decides.
    let (ready_tx, ready_rx) = mpsc::channel();
    let wanted = n;
    let listener = std::thread::spawn(move || -> Result<BTreeMap<IpAddr, Instant>> {
        in_netns::enter(&client_ns).map_err(|e| anyhow!(e))?;
        let sock = PacketSocket::open("eth0", Some((ethertype, Duration::from_millis(100))))?;
        let _ = ready_tx.send(());
        let mut first: BTreeMap<IpAddr, Instant> = BTreeMap::new();
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        while first.len() < wanted && start.elapsed() < LISTEN {
            if let Some(ip) = sock.recv(&mut buf).and_then(|f| announced(f, node_mac)) {
                first.entry(ip).or_insert_with(Instant::now);
            }
        }
        Ok(first)
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).context("the client's listener did not start")?;

    let times = take_over(&node_ns, args.vips.clone(), args.batched)?;
    let seen = listener.join().map_err(|_| anyhow!("the client's listener panicked"))??;
    let how = if args.batched { "batched" } else { "one by one" };
    let family = if v6 { "IPv6" } else { "IPv4" };
    println!("takeover of {n} {family} VIPs, additions {how}:");
    println!("  decision -> last address added:      {}", ms(times.added - times.decision));
    println!("  decision -> last announcement sent:  {}", ms(times.announced - times.decision));
    match seen.values().max() {
        Some(last) => println!(
            "  decision -> client has every announcement: {}/{n} VIPs, the last after {}",
            seen.len(),
            ms(*last - times.decision)
        ),
        None => println!("  the client saw no announcement"),
    }
    if times.failed > 0 {
        println!("  additions failed: {}", times.failed);
    }

    // Every VIP asked once; answers counted for a second.
    let client_ns = format!("{base}-client");
    let vips = args.vips;
    let answered_count = in_netns::call_in(&client_ns, move || -> Result<usize> {
        let sock = PacketSocket::open("eth0", Some((ethertype, Duration::from_millis(10))))?;
        let mut answers = std::collections::BTreeSet::new();
        let mut buf = [0u8; 2048];
        for (i, vip) in vips.iter().enumerate() {
            sock.send(&request(*vip, client_mac)?)?;
            // Read as we go: the socket's buffer would not hold thousands of answers.
            if i % 32 == 31 {
                while let Some(ip) = sock.recv(&mut buf).map(answered) {
                    answers.extend(ip);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && answers.len() < vips.len() {
            if let Some(ip) = sock.recv(&mut buf).and_then(answered) {
                answers.insert(ip);
            }
        }
        Ok(answers.iter().filter(|a| vips.contains(a)).count())
    })?;
    println!("  client asked every VIP once: {answered_count}/{n} answered");
    segment.destroy()
}
