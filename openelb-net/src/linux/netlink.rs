//! Interface resolution and VIP address management over rtnetlink.
//!
//! How our addresses are marked (so a restarting speaker recognises them and never touches anyone else's):
//! - every VIP is added with `IFA_PROTO` = [`VIP_ADDR_PROTO`] (kernel ≥ 5.18; `ip addr` shows `proto 0x4f`).
//!   This works for IPv4 and IPv6 alike, which labels do not (IPv6 has no labels).
//! - IPv4 VIPs additionally get the label `<iface>:oelb` when it fits the kernel's 15-byte label limit
//!   (so on interfaces with names up to 10 bytes). Labels must start with the interface name, which is why
//!   longer names get no label; the protocol mark alone is then authoritative. On kernels before 5.18 the
//!   label is the only mark, and IPv6 VIPs cannot be recognised after a restart there.
//!
//! An address counts as ours if it carries either mark. VIPs are /32 or /128 with `IFA_F_NOPREFIXROUTE`, and
//! IPv6 ones with `IFA_F_NODAD` so they are usable at once (we send our own unsolicited NA).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteAttribute;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::ops::{IfaceSpec, Interface, NetError};
use crate::wire::MacAddr;
use openelb_core::model::IpFamily;

/// The `IFA_PROTO` value marking addresses added by openelb ('O'). Values 0-3 belong to the kernel.
pub const VIP_ADDR_PROTO: u8 = 0x4f;
/// Suffix of the IPv4 label marking our addresses.
pub const VIP_LABEL_SUFFIX: &str = ":oelb";
const LABEL_MAX: usize = 15;
const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;

/// The label for our IPv4 VIPs on `iface`, if it fits.
pub fn vip_label(iface: &str) -> Option<String> {
    let label = format!("{iface}{VIP_LABEL_SUFFIX}");
    (label.len() <= LABEL_MAX).then_some(label)
}

fn nl_err(iface: &str, op: &'static str, subject: impl ToString, e: rtnetlink::Error) -> NetError {
    NetError::Netlink { iface: iface.to_string(), op, subject: subject.to_string(), source: Box::new(e) }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn interface_of(msg: &LinkMessage) -> Interface {
    let mut name = String::new();
    let mut mac = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr),
            _ => {}
        }
    }
    Interface { name, index: msg.header.index, mac }
}

pub(crate) async fn link_by_name(handle: &Handle, name: &str) -> Result<LinkMessage, NetError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(NetError::NoSuchInterface(name.to_string())),
        Err(e) if errno(&e) == Some(ENODEV) => Err(NetError::NoSuchInterface(name.to_string())),
        Err(e) => Err(nl_err(name, "get link", name, e)),
    }
}

pub(crate) async fn link_by_index(handle: &Handle, index: u32) -> Result<LinkMessage, NetError> {
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(NetError::NoSuchIndex(index)),
        Err(e) if errno(&e) == Some(ENODEV) => Err(NetError::NoSuchIndex(index)),
        Err(e) => Err(nl_err(&format!("#{index}"), "get link", index, e)),
    }
}

/// Administratively up (`IFF_UP`) and with a carrier (`IFF_LOWER_UP`): `ip link set eth0 down` clears the
/// first, a cable pull or a downed veth peer the second.
pub(crate) async fn link_up(handle: &Handle, iface: &Interface) -> Result<bool, NetError> {
    let link = link_by_index(handle, iface.index).await?;
    let flags = link.header.flags;
    Ok(flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp))
}

pub(crate) async fn resolve(handle: &Handle, spec: &IfaceSpec) -> Result<Interface, NetError> {
    match spec {
        IfaceSpec::Name(name) => Ok(interface_of(&link_by_name(handle, name).await?)),
        IfaceSpec::CanReach(ip) => {
            let index = route_oif(handle, *ip).await?;
            let link = link_by_index(handle, index).await?;
            if link.header.flags.contains(LinkFlags::Loopback) {
                return Err(NetError::RouteViaLoopback(*ip));
            }
            Ok(interface_of(&link))
        }
        IfaceSpec::Holding(ip) => {
            let mut addrs = handle.address().get().set_address_filter(*ip).execute();
            let found = addrs.try_next().await.map_err(|e| nl_err("*", "find address", ip, e))?;
            let msg = found.ok_or(NetError::NoInterfaceHolds(*ip))?;
            Ok(interface_of(&link_by_index(handle, msg.header.index).await?))
        }
    }
}

async fn route_oif(handle: &Handle, ip: IpAddr) -> Result<u32, NetError> {
    let msg = match ip {
        IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(v4, 32).build(),
        IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(v6, 128).build(),
    };
    let mut routes = handle.route().get(msg).execute();
    let route = match routes.try_next().await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(NetError::NoRoute(ip)),
        Err(e) if matches!(errno(&e), Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)) => {
            return Err(NetError::NoRoute(ip));
        }
        Err(e) => return Err(nl_err("*", "route get", ip, e)),
    };
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        })
        .ok_or(NetError::NoRoute(ip))
}

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS otherwise.
    let mut addr = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

/// Whether an address message carries one of our marks.
pub fn is_ours(iface: &str, msg: &AddressMessage) -> bool {
    let label = vip_label(iface);
    msg.attributes.iter().any(|a| match a {
        AddressAttribute::Protocol(p) => u8::from(*p) == VIP_ADDR_PROTO,
        AddressAttribute::Label(l) => label.as_deref() == Some(l.as_str()),
        _ => false,
    })
}

fn flags_of(msg: &AddressMessage) -> AddressFlags {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_truncate(u32::from(msg.header.flags.bits())))
}

async fn addresses(handle: &Handle, iface: &Interface) -> Result<Vec<AddressMessage>, NetError> {
    handle
        .address()
        .get()
        .set_link_index_filter(iface.index)
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| nl_err(&iface.name, "list addresses", &iface.name, e))
}

/// The addresses on the interface that are *not* ours (the node's own): what adding or removing a VIP must
/// never touch. Callers cache this listing briefly: a dump per VIP made a 1000-VIP takeover quadratic (7 s of
/// CPU per node at start-up, measured), while node addresses change rarely.
pub(crate) async fn foreign(handle: &Handle, iface: &Interface) -> Result<Vec<IpAddr>, NetError> {
    Ok(addresses(handle, iface).await?.iter().filter(|m| !is_ours(&iface.name, m)).filter_map(address_of).collect())
}

/// Adds our VIP. `foreign` is a recent listing of the node's own addresses on the interface ([`foreign`]).
pub(crate) async fn add_vip(
    handle: &Handle,
    iface: &Interface,
    ip: IpAddr,
    foreign: &[IpAddr],
) -> Result<(), NetError> {
    // Checked first, not only on EEXIST: the kernel accepts 192.0.2.11/32 next to the node's 192.0.2.11/24,
    // and a later remove of "our" /32 would then look like it removed the node address.
    if foreign.contains(&ip) {
        return Err(NetError::NotOurs { iface: iface.name.clone(), ip, op: "add" });
    }
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    let mut req = handle.address().add(iface.index, ip, prefix);
    let msg = req.message_mut();
    let mut flags = AddressFlags::Noprefixroute;
    if ip.is_ipv6() {
        flags |= AddressFlags::Nodad;
        msg.header.flags |= AddressHeaderFlags::Nodad;
    }
    msg.attributes.push(AddressAttribute::Flags(flags));
    msg.attributes.push(AddressAttribute::Protocol(AddressProtocol::from(VIP_ADDR_PROTO)));
    if ip.is_ipv4()
        && let Some(label) = vip_label(&iface.name)
    {
        msg.attributes.push(AddressAttribute::Label(label));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => {
            if find_address(handle, iface, ip).await?.is_some_and(|m| is_ours(&iface.name, &m)) {
                Ok(())
            } else {
                Err(NetError::NotOurs { iface: iface.name.clone(), ip, op: "add" })
            }
        }
        Err(e) => Err(nl_err(&iface.name, "add VIP", ip, e)),
    }
}

/// Our message for `ip` if there is one, else any message for it: a node address equal to a VIP is foreign
/// even when our /32 sits beside it.
async fn find_address(handle: &Handle, iface: &Interface, ip: IpAddr) -> Result<Option<AddressMessage>, NetError> {
    let all = addresses(handle, iface).await?;
    let matching: Vec<&AddressMessage> = all.iter().filter(|m| address_of(m) == Some(ip)).collect();
    Ok(matching.iter().find(|m| is_ours(&iface.name, m)).or_else(|| matching.first()).map(|m| (*m).clone()))
}

/// Removes our VIP: the /32 or /128 with this address, never a node address (`foreign`, a recent listing).
/// The delete names ifindex, prefix length and address, so no listing of our own VIPs is needed.
pub(crate) async fn remove_vip(
    handle: &Handle,
    iface: &Interface,
    ip: IpAddr,
    foreign: &[IpAddr],
) -> Result<bool, NetError> {
    if foreign.contains(&ip) {
        return Err(NetError::NotOurs { iface: iface.name.clone(), ip, op: "remove" });
    }
    let mut msg = AddressMessage::default();
    msg.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    msg.header.prefix_len = if ip.is_ipv4() { 32 } else { 128 };
    msg.header.index = iface.index;
    msg.attributes.push(AddressAttribute::Address(ip));
    if ip.is_ipv4() {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    match handle.address().del(msg).execute().await {
        Ok(()) => Ok(true),
        // Someone removed it between our lookup and the delete: the outcome we wanted.
        Err(e) if errno(&e) == Some(EADDRNOTAVAIL) => Ok(false),
        Err(e) => Err(nl_err(&iface.name, "remove VIP", ip, e)),
    }
}

pub(crate) async fn list_our_vips(handle: &Handle, iface: &Interface) -> Result<Vec<IpAddr>, NetError> {
    let mut ips: Vec<IpAddr> =
        addresses(handle, iface).await?.iter().filter(|m| is_ours(&iface.name, m)).filter_map(address_of).collect();
    ips.sort();
    Ok(ips)
}

pub(crate) async fn source_address(handle: &Handle, iface: &Interface, family: IpFamily) -> Result<IpAddr, NetError> {
    let all = addresses(handle, iface).await?;
    let candidates = all.iter().filter(|m| !is_ours(&iface.name, m));
    let found = match family {
        IpFamily::V4 => candidates
            .filter(|m| !flags_of(m).contains(AddressFlags::Secondary))
            .filter_map(address_of)
            .find(IpAddr::is_ipv4),
        IpFamily::V6 => {
            let link_local: Vec<(IpAddr, bool)> = candidates
                .filter_map(|m| {
                    let ip = address_of(m)?;
                    let tentative = flags_of(m).intersects(AddressFlags::Tentative | AddressFlags::Dadfailed);
                    matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80).then_some((ip, tentative))
                })
                .collect();
            link_local.iter().find(|(_, t)| !t).or(link_local.first()).map(|(ip, _)| *ip)
        }
    };
    found.ok_or_else(|| NetError::NoSourceAddress { iface: iface.name.clone(), family })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_fits_only_short_names() {
        assert_eq!(vip_label("eth0").as_deref(), Some("eth0:oelb"));
        assert_eq!(vip_label("enp0s31f6x").as_deref(), Some("enp0s31f6x:oelb"));
        assert_eq!(vip_label("enp0s31f6xy"), None);
    }

    #[test]
    fn marks_are_recognised() {
        let mut msg = AddressMessage::default();
        assert!(!is_ours("eth0", &msg));
        msg.attributes.push(AddressAttribute::Label("eth0".into()));
        assert!(!is_ours("eth0", &msg));
        msg.attributes.push(AddressAttribute::Protocol(AddressProtocol::from(VIP_ADDR_PROTO)));
        assert!(is_ours("eth0", &msg));
        let mut labelled = AddressMessage::default();
        labelled.attributes.push(AddressAttribute::Label("eth0:oelb".into()));
        assert!(is_ours("eth0", &labelled));
        assert!(!is_ours("eth1", &labelled));
    }
}
