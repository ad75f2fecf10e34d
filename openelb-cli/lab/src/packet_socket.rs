//! A raw `AF_PACKET` socket on one interface, for the lab's own frames: the ARP prober (iputils' arping sends
//! at most once a second) and the hostile-LAN sender (frames no socket of the IP stack would send: spoofed
//! sources, bad checksums, TTL 254).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use openelb_net::wire::ethernet::MacAddr;

/// Bound to one interface; closed on drop. The socket belongs to the network namespace of the thread that
/// opened it, and may be used from any thread afterwards.
#[derive(Debug)]
pub struct PacketSocket {
    fd: libc::c_int,
    ifindex: libc::c_int,
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: `fd` is a socket this value owns and nothing else closes.
        unsafe { libc::close(self.fd) };
    }
}

fn sockaddr(ifindex: libc::c_int, protocol: u16, dst: MacAddr) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value that the fields below complete.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as libc::c_ushort;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&dst.0);
    sa
}

fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, value: &T, what: &str) -> Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).context("socket option size")?;
    // SAFETY: `value` points to a valid T and `len` is its size.
    let rc = unsafe { libc::setsockopt(fd, level, name, (value as *const T).cast(), len) };
    if rc < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

impl PacketSocket {
    /// Opens a socket on `iface` in this thread's namespace. With `receive: Some(ethertype)` it receives the
    /// frames of that EtherType, each `recv` waiting at most `timeout`; with `None` it only sends (nothing is
    /// queued for it, so a sender never costs the kernel a copy of the LAN's traffic).
    pub fn open(iface: &str, receive: Option<(u16, Duration)>) -> Result<Self> {
        let name = std::ffi::CString::new(iface).context("interface name contains a NUL byte")?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("interface {iface}: {}", std::io::Error::last_os_error());
        }
        let ifindex = libc::c_int::try_from(ifindex).context("interface index out of range")?;
        let protocol = receive.map_or(0, |(ethertype, _)| ethertype);
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(protocol.to_be())) };
        if fd < 0 {
            bail!("AF_PACKET socket: {} (needs CAP_NET_RAW)", std::io::Error::last_os_error());
        }
        let sock = PacketSocket { fd, ifindex };
        let sa = sockaddr(ifindex, protocol, MacAddr::ZERO);
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
        if let Some((_, timeout)) = receive {
            let tv = libc::timeval {
                tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
            };
            setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv, "SO_RCVTIMEO")?;
        }
        Ok(sock)
    }

    /// Sends one whole Ethernet frame (its header names the destination).
    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        let dst = frame.get(..6).and_then(|d| <[u8; 6]>::try_from(d).ok()).map_or(MacAddr::BROADCAST, MacAddr);
        let ethertype = frame.get(12..14).map_or(0, |t| u16::from_be_bytes([t[0], t[1]]));
        let sa = sockaddr(self.ifindex, ethertype, dst);
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
        if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }

    /// One frame, or `None` after the receive timeout.
    pub fn recv<'a>(&self, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).ok().and_then(|n| buf.get(..n))
    }
}

/// The MAC address of `iface` as sysfs shows it in this thread's network namespace.
pub fn mac_of(iface: &str) -> Result<MacAddr> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{path}: cannot read"))?;
    text.trim().parse::<MacAddr>().map_err(|e| anyhow::anyhow!("{path}: {e}"))
}
