//! `lab arp-probe`: ARP requests for one address every few milliseconds until someone answers, run inside the
//! client's namespace by `lab kube-bench`. iputils' arping cannot send faster than once a second, which would
//! hide everything this benchmark measures.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use openelb_net::wire;
use openelb_net::wire::arp::{ArpRepr, Operation, parse_frame};
use openelb_net::wire::ethernet::{ETHERTYPE_ARP, EthernetRepr, MacAddr};

/// A raw AF_PACKET socket bound to one interface for ARP frames; closed on drop.
struct ArpSocket {
    fd: libc::c_int,
    ifindex: libc::c_int,
}

impl Drop for ArpSocket {
    fn drop(&mut self) {
        // SAFETY: `fd` is a socket this value owns and nothing else closes.
        unsafe { libc::close(self.fd) };
    }
}

fn sockaddr(ifindex: libc::c_int, dst: MacAddr) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value that the fields below complete.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as libc::c_ushort;
    sa.sll_protocol = ETHERTYPE_ARP.to_be();
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&dst.0);
    sa
}

impl ArpSocket {
    fn open(iface: &str) -> Result<Self> {
        let name = std::ffi::CString::new(iface).context("interface name contains a NUL byte")?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("interface {iface}: {}", std::io::Error::last_os_error());
        }
        let ifindex = libc::c_int::try_from(ifindex).context("interface index out of range")?;
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(ETHERTYPE_ARP.to_be())) };
        if fd < 0 {
            bail!("AF_PACKET socket: {} (needs CAP_NET_RAW)", std::io::Error::last_os_error());
        }
        let sock = ArpSocket { fd, ifindex };
        let sa = sockaddr(ifindex, MacAddr::ZERO);
        // SAFETY: `sa` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("binding to {iface}: {}", std::io::Error::last_os_error());
        }
        // Receives wait at most 1 ms, so requests keep going out on time.
        let tv = libc::timeval { tv_sec: 0, tv_usec: 1000 };
        // SAFETY: `tv` is a valid timeval and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("SO_RCVTIMEO: {}", std::io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn send(&self, frame: &[u8]) -> Result<()> {
        let sa = sockaddr(self.ifindex, MacAddr::BROADCAST);
        // SAFETY: `frame` is valid for its length; `sa` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            bail!("sending an ARP request: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// One frame, or `None` after the receive timeout.
    fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).ok().and_then(|n| buf.get(..n))
    }
}

/// The MAC address of `iface` as sysfs shows it in this network namespace.
fn mac_of(iface: &str) -> Result<MacAddr> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{path}: cannot read"))?;
    text.trim().parse::<MacAddr>().map_err(|e| anyhow::anyhow!("{path}: {e}"))
}

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
    let sock = ArpSocket::open(iface)?;
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
            sock.send(&frame)?;
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
