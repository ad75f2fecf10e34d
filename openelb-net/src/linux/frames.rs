//! Sending whole Ethernet frames (gratuitous ARP, unsolicited NA) on an interface.
//!
//! Deviation from the plan to use `pnet::datalink`: its Layer-2 channel opens an `ETH_P_ALL` socket that is
//! promiscuous by default and receives a copy of every frame on the NIC into a buffer we would never read.
//! A speaker only *sends* frames, so we open `AF_PACKET`/`SOCK_RAW` with protocol 0, which receives nothing,
//! and send with `sendto` to the interface index. One socket serves every interface (the index travels with
//! each frame) and lives as long as the speaker: closing an `AF_PACKET` socket waits 14-17 ms in the kernel here
//! (measured), which made a burst for 1000 VIPs take ~15 s when each frame had its own socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A send-only packet socket (protocol 0, so it receives nothing).
#[derive(Debug)]
pub(crate) struct FrameSocket {
    fd: OwnedFd,
}

impl FrameSocket {
    pub(crate) fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked and owned immediately.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor we own.
        Ok(FrameSocket { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Sends one complete Ethernet frame (header included) out of interface `ifindex`.
    pub(crate) fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame shorter than an Ethernet header"));
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex"))?;
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: buffer and address are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        if sent as usize != frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("sent {sent} of {} bytes", frame.len())));
        }
        Ok(())
    }
}
