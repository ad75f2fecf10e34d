//! ARP for IPv4 over Ethernet (RFC 826), and the gratuitous ARP a new VIP holder broadcasts.

use std::net::Ipv4Addr;

use super::ethernet::{self, ETHERTYPE_ARP, EthernetRepr, MacAddr};
use super::{WireError, array, be16, head_mut, need};

/// htype, ptype, hlen, plen, oper, then sender and target MAC and IPv4 addresses.
pub const PACKET_LEN: usize = 28;
/// An Ethernet header plus the ARP packet, without the padding a NIC adds to reach 60 bytes.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;
const HTYPE_ETHERNET: u16 = 1;

const WHAT: &str = "ARP packet";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
}

impl Operation {
    pub const fn code(self) -> u16 {
        match self {
            Operation::Request => 1,
            Operation::Reply => 2,
        }
    }
}

/// A checked view of an ARP packet: at least [`PACKET_LEN`] bytes. Field widths are *not* checked here
/// (see [`ArpRepr::parse`]), so the view can show what a foreign packet carried.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need(WHAT, buffer.as_ref(), PACKET_LEN)?;
        Ok(Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn hardware_type(&self) -> u16 {
        be16(self.b(), 0)
    }
    pub fn protocol_type(&self) -> u16 {
        be16(self.b(), 2)
    }
    pub fn hardware_len(&self) -> u8 {
        self.b().get(4).copied().unwrap_or(0)
    }
    pub fn protocol_len(&self) -> u8 {
        self.b().get(5).copied().unwrap_or(0)
    }
    pub fn operation(&self) -> u16 {
        be16(self.b(), 6)
    }
    pub fn sender_mac(&self) -> MacAddr {
        MacAddr(array(self.b(), 8))
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.b(), 14))
    }
    pub fn target_mac(&self) -> MacAddr {
        MacAddr(array(self.b(), 18))
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.b(), 24))
    }
}

/// An Ethernet/IPv4 ARP request or reply as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub operation: Operation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Accepts only Ethernet (1) / IPv4 (0x0800) with 6- and 4-byte addresses, operation request or reply.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        if packet.hardware_type() != HTYPE_ETHERNET || packet.hardware_len() != 6 {
            return Err(WireError::Malformed { what: WHAT, reason: "hardware is not Ethernet with 6-byte addresses" });
        }
        if packet.protocol_type() != ethernet::ETHERTYPE_IPV4 || packet.protocol_len() != 4 {
            return Err(WireError::Malformed { what: WHAT, reason: "protocol is not IPv4 with 4-byte addresses" });
        }
        let operation = match packet.operation() {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => return Err(WireError::BadType { what: WHAT, expected: "1 (request) or 2 (reply)", got: other }),
        };
        Ok(ArpRepr {
            operation,
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        Self::parse(&Packet::new_checked(bytes)?)
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        head_mut(WHAT, buf, PACKET_LEN)?.copy_from_slice(&self.to_bytes());
        Ok(())
    }

    pub fn to_bytes(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[2..4].copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.operation.code().to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// Whether this announces the sender's own binding (sender IP = target IP), as a GARP does.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

/// Parses an Ethernet frame carrying ARP; `BadType` if the EtherType is not ARP.
pub fn parse_frame(frame: &[u8]) -> Result<(EthernetRepr, ArpRepr), WireError> {
    let (eth, payload) = EthernetRepr::parse_bytes(frame)?;
    if eth.ethertype != ETHERTYPE_ARP {
        return Err(WireError::BadType { what: "Ethernet frame", expected: "0x0806 (ARP)", got: eth.ethertype });
    }
    Ok((eth, ArpRepr::parse_bytes(payload)?))
}

/// Which of the two customary gratuitous ARP encodings to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GratuitousForm {
    /// Opcode request, sender IP = target IP = VIP, target MAC 00:00:00:00:00:00, broadcast (RFC 5227 §3's
    /// "ARP Announcement"). Linux with the default `arp_accept=0` creates no new entry from it but *updates
    /// an existing* neighbour entry for the VIP (`arp_process` treats sender IP = target IP as an update
    /// of the sender's binding), which is exactly the takeover case: clients that talked to the VIP move to
    /// the new MAC. `arping -U` and keepalived send this form (they put ff:ff:ff:ff:ff:ff or our MAC in the
    /// target MAC; receivers ignore that field in a request).
    #[default]
    Request,
    /// Opcode reply, sender IP = target IP = VIP, target MAC = our MAC, broadcast (`arping -A`). Some
    /// switches and older stacks only learn from replies; Linux treats both forms alike.
    Reply,
}

/// The full Ethernet frame (42 bytes, unpadded) of a gratuitous ARP for `vip` at `mac`. Send it only after
/// the address is on the interface: the takeover must already answer the traffic it attracts.
pub fn gratuitous(mac: MacAddr, vip: Ipv4Addr, form: GratuitousForm) -> Vec<u8> {
    let (operation, target_mac) = match form {
        GratuitousForm::Request => (Operation::Request, MacAddr::ZERO),
        GratuitousForm::Reply => (Operation::Reply, mac),
    };
    let arp = ArpRepr { operation, sender_mac: mac, sender_ip: vip, target_mac, target_ip: vip };
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: mac, ethertype: ETHERTYPE_ARP };
    eth.frame(&arp.to_bytes())
}
