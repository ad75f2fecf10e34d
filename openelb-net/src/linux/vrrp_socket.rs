//! Raw IP sockets for VRRP (IP protocol 112), one per interface and family.
//!
//! Sending and receiving use separate sockets. The sender joins no group and has a drop-everything socket
//! filter, so its queue never fills with adverts nobody reads; it sets the source address per packet with
//! `IP_PKTINFO` / `IPV6_PKTINFO` (binding a raw socket to an address would also filter what it receives).
//! The receiver joins 224.0.0.18 / ff02::12 on its interface only, is bound to the device (`SO_BINDTODEVICE`)
//! so one node with several interfaces keeps their VRRP traffic apart, and turns off `IP_MULTICAST_ALL` so
//! groups joined by other sockets do not leak in. TTL / hop limit is 255 on send (RFC 5798 §5.1.1.3) and is
//! checked on receive: IPv4 raw sockets deliver the IP header, IPv6 ones hand the hop limit over as
//! `IPV6_HOPLIMIT` ancillary data (and the destination, needed for the checksum, as `IPV6_PKTINFO`).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use openelb_core::vrrp::consts::{MULTICAST_V4, MULTICAST_V6, PROTOCOL, TTL};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::codec;
use crate::ops::{Incoming, Interface, NetError};
use crate::wire::DecodeFailure;
use openelb_core::model::IpFamily;

fn io_err(iface: &Interface, op: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
    let iface = iface.name.clone();
    let op = op.into();
    move |source| NetError::Io { iface, op, source }
}

fn raw_socket(iface: &Interface, family: IpFamily) -> Result<Socket, NetError> {
    let domain = match family {
        IpFamily::V4 => Domain::IPV4,
        IpFamily::V6 => Domain::IPV6,
    };
    let sock = Socket::new(domain, Type::RAW.cloexec(), Some(Protocol::from(i32::from(PROTOCOL))))
        .map_err(io_err(iface, "open raw VRRP socket"))?;
    sock.bind_device(Some(iface.name.as_bytes())).map_err(io_err(iface, "SO_BINDTODEVICE"))?;
    sock.set_nonblocking(true).map_err(io_err(iface, "set non-blocking"))?;
    Ok(sock)
}

fn register(sock: Socket) -> io::Result<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its descriptor and returns the same one from `as_raw_fd` until it is dropped,
    // which happens only when the AsyncFd drops it.
    unsafe { AsyncFd::register(sock) }.map_err(io::Error::from)
}

fn setsockopt_int(sock: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a valid c_int for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn drop_all_filter(sock: &Socket) -> io::Result<()> {
    let mut prog = [libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: 0 }];
    let fprog = libc::sock_fprog { len: 1, filter: prog.as_mut_ptr() };
    // SAFETY: fprog points at a valid one-instruction program for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Sends adverts on one interface in one family.
pub struct VrrpSender {
    fd: AsyncFd<Socket>,
    iface: Interface,
    family: IpFamily,
}

impl VrrpSender {
    /// Needs a tokio runtime with I/O enabled.
    pub fn open(iface: &Interface, family: IpFamily) -> Result<Self, NetError> {
        let sock = raw_socket(iface, family)?;
        drop_all_filter(&sock).map_err(io_err(iface, "attach drop-all filter"))?;
        match family {
            IpFamily::V4 => {
                sock.set_ttl_v4(u32::from(TTL)).map_err(io_err(iface, format!("IP_TTL {TTL}")))?;
                sock.set_multicast_ttl_v4(u32::from(TTL)).map_err(io_err(iface, format!("IP_MULTICAST_TTL {TTL}")))?;
                sock.set_multicast_loop_v4(false).map_err(io_err(iface, "IP_MULTICAST_LOOP off"))?;
            }
            IpFamily::V6 => {
                sock.set_unicast_hops_v6(u32::from(TTL)).map_err(io_err(iface, format!("IPV6_UNICAST_HOPS {TTL}")))?;
                sock.set_multicast_hops_v6(u32::from(TTL))
                    .map_err(io_err(iface, format!("IPV6_MULTICAST_HOPS {TTL}")))?;
                sock.set_multicast_loop_v6(false).map_err(io_err(iface, "IPV6_MULTICAST_LOOP off"))?;
                sock.set_multicast_if_v6(iface.index).map_err(io_err(iface, "IPV6_MULTICAST_IF"))?;
            }
        }
        let fd = register(sock).map_err(io_err(iface, "register with tokio"))?;
        Ok(VrrpSender { fd, iface: iface.clone(), family })
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Sends one VRRP payload from `src` to `dst` (the group or a unicast peer).
    pub async fn send(&self, src: IpAddr, dst: IpAddr, payload: &[u8]) -> Result<(), NetError> {
        let what = format!("send VRRP {src} -> {dst}");
        if IpFamily::of(&src) != self.family || IpFamily::of(&dst) != self.family {
            return Err(NetError::Io {
                iface: self.iface.name.clone(),
                op: what,
                source: io::Error::new(io::ErrorKind::InvalidInput, "address family differs from the socket's"),
            });
        }
        let ifindex = self.iface.index;
        self.fd
            .async_io(Interest::WRITABLE, |sock| send_with_pktinfo(sock, ifindex, src, dst, payload))
            .await
            .map_err(io_err(&self.iface, what))
    }
}

fn sockaddr(ip: IpAddr, ifindex: u32) -> SockAddr {
    match ip {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, 0)).into(),
        IpAddr::V6(v6) => {
            let scoped = v6.is_multicast() || v6.segments()[0] & 0xffc0 == 0xfe80;
            SocketAddr::V6(SocketAddrV6::new(v6, 0, 0, if scoped { ifindex } else { 0 })).into()
        }
    }
}

fn send_with_pktinfo(sock: &Socket, ifindex: u32, src: IpAddr, dst: IpAddr, payload: &[u8]) -> io::Result<()> {
    let addr = sockaddr(dst, ifindex);
    // 64 bytes hold one in_pktinfo or in6_pktinfo control message with room to spare.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
    // SAFETY: msghdr is plain old data; all-zero is valid, and every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_* are pure arithmetic on the header we own; the data written fits in `control`.
    unsafe {
        let (level, kind, len) = match src {
            IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO, size_of::<libc::in_pktinfo>()),
            IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, size_of::<libc::in6_pktinfo>()),
        };
        msg.msg_controllen = libc::CMSG_SPACE(len as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("control buffer too small"));
        }
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
        let data = libc::CMSG_DATA(cmsg);
        match src {
            IpAddr::V4(v4) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: ifindex as i32,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from_ne_bytes(v4.octets()) },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data.cast::<libc::in_pktinfo>(), info);
            }
            IpAddr::V6(v6) => {
                let info =
                    libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: v6.octets() }, ipi6_ifindex: ifindex };
                std::ptr::write_unaligned(data.cast::<libc::in6_pktinfo>(), info);
            }
        }
    }
    // SAFETY: msg is fully initialised above.
    let sent = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives adverts on one interface in one family, reporting invalid packets as drops.
pub struct VrrpReceiver {
    fd: AsyncFd<Socket>,
    iface: Interface,
    family: IpFamily,
    buf: Vec<u8>,
}

impl VrrpReceiver {
    /// Needs a tokio runtime with I/O enabled.
    pub fn open(iface: &Interface, family: IpFamily) -> Result<Self, NetError> {
        let sock = raw_socket(iface, family)?;
        match family {
            IpFamily::V4 => {
                sock.set_multicast_all_v4(false).map_err(io_err(iface, "IP_MULTICAST_ALL off"))?;
                sock.join_multicast_v4_n(&MULTICAST_V4, &InterfaceIndexOrAddress::Index(iface.index))
                    .map_err(io_err(iface, format!("join {MULTICAST_V4}")))?;
            }
            IpFamily::V6 => {
                sock.set_multicast_all_v6(false).map_err(io_err(iface, "IPV6_MULTICAST_ALL off"))?;
                sock.join_multicast_v6(&MULTICAST_V6, iface.index)
                    .map_err(io_err(iface, format!("join {MULTICAST_V6}")))?;
                sock.set_recv_hoplimit_v6(true).map_err(io_err(iface, "IPV6_RECVHOPLIMIT"))?;
                setsockopt_int(&sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                    .map_err(io_err(iface, "IPV6_RECVPKTINFO"))?;
            }
        }
        let fd = register(sock).map_err(io_err(iface, "register with tokio"))?;
        Ok(VrrpReceiver { fd, iface: iface.clone(), family, buf: vec![0; 2048] })
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The next packet: a valid advert (TTL 255, VRRPv3, checksum correct) or why it was dropped.
    pub async fn recv(&mut self) -> Result<Incoming, NetError> {
        let family = self.family;
        let buf = &mut self.buf;
        let got = self
            .fd
            .async_io(Interest::READABLE, |sock| recv_one(sock, family, buf))
            .await
            .map_err(io_err(&self.iface, "receive VRRP"))?;
        if let Incoming::Dropped(reason) = got {
            tracing::trace!(iface = %self.iface.name, %reason, "VRRP packet dropped");
        }
        Ok(got)
    }
}

/// One datagram, decoded.
fn recv_one(sock: &Socket, family: IpFamily, buf: &mut [u8]) -> io::Result<Incoming> {
    // SAFETY: sockaddr_storage is plain old data.
    let mut name: libc::sockaddr_storage = unsafe { zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 16]>();
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let data = &buf[..n as usize];
    if family == IpFamily::V4 {
        return Ok(codec::decode_ipv4_packet(data));
    }
    if i32::from(name.ss_family) != libc::AF_INET6 {
        return Ok(Incoming::Dropped(DecodeFailure::MissingAncillaryData));
    }
    // SAFETY: the kernel filled a sockaddr_in6 (checked family above).
    let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned((&name as *const libc::sockaddr_storage).cast()) };
    let src = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
    let mut hop = None;
    let mut dst = None;
    // SAFETY: standard cmsg walk over the control buffer the kernel filled (msg_controllen updated by recvmsg).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT {
                let v: i32 = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                hop = u8::try_from(v).ok();
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let (Some(hop), Some(dst)) = (hop, dst) else {
        return Ok(Incoming::Dropped(DecodeFailure::MissingAncillaryData));
    };
    Ok(codec::decode_ipv6_payload(src, dst, hop, data))
}
