//! ARP for IPv4 over Ethernet (RFC 826), read and written through pnet's `ArpPacket`, and the gratuitous ARP
//! a new VIP holder broadcasts.

use std::net::Ipv4Addr;

use pnet_packet::arp::{ArpHardwareType, ArpOperation, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::EtherType;

use super::ethernet::{self, ETHERTYPE_ARP, EthernetRepr, MacAddr};
use super::{Repr, WireError};

/// Byte offsets of the packet's fields.
pub mod field {
    use std::ops::Range;

    pub const HARDWARE_TYPE: Range<usize> = 0..2;
    pub const PROTOCOL_TYPE: Range<usize> = 2..4;
    pub const HARDWARE_LEN: usize = 4;
    pub const PROTOCOL_LEN: usize = 5;
    pub const OPERATION: Range<usize> = 6..8;
    pub const SENDER_MAC: Range<usize> = 8..14;
    pub const SENDER_IP: Range<usize> = 14..18;
    pub const TARGET_MAC: Range<usize> = 18..24;
    pub const TARGET_IP: Range<usize> = 24..28;
}

/// htype, ptype, hlen, plen, oper, then sender and target MAC and IPv4 addresses.
pub const PACKET_LEN: usize = field::TARGET_IP.end;
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
#[derive(Debug)]
pub struct Packet<'a> {
    inner: ArpPacket<'a>,
}

impl<'a> Packet<'a> {
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        let inner =
            ArpPacket::new(bytes).ok_or(WireError::Truncated { what: WHAT, need: PACKET_LEN, have: bytes.len() })?;
        Ok(Packet { inner })
    }

    pub fn hardware_type(&self) -> u16 {
        self.inner.get_hardware_type().0
    }
    pub fn protocol_type(&self) -> u16 {
        self.inner.get_protocol_type().0
    }
    pub fn hardware_len(&self) -> u8 {
        self.inner.get_hw_addr_len()
    }
    pub fn protocol_len(&self) -> u8 {
        self.inner.get_proto_addr_len()
    }
    pub fn operation(&self) -> u16 {
        self.inner.get_operation().0
    }
    pub fn sender_mac(&self) -> MacAddr {
        self.inner.get_sender_hw_addr().into()
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.inner.get_sender_proto_addr()
    }
    pub fn target_mac(&self) -> MacAddr {
        self.inner.get_target_hw_addr().into()
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        self.inner.get_target_proto_addr()
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
    /// Whether this announces the sender's own binding (sender IP = target IP), as a GARP does.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

impl Repr for ArpRepr {
    type Context = ();
    type View<'a> = Packet<'a>;

    fn view(bytes: &[u8]) -> Result<Packet<'_>, WireError> {
        Packet::new_checked(bytes)
    }

    /// Accepts only Ethernet (1) / IPv4 (0x0800) with 6- and 4-byte addresses, operation request or reply.
    fn parse(packet: &Packet<'_>, (): ()) -> Result<Self, WireError> {
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

    fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    fn emit(&self, buf: &mut [u8], (): ()) -> Result<(), WireError> {
        let have = buf.len();
        let mut p = MutableArpPacket::new(buf).ok_or(WireError::Truncated { what: WHAT, need: PACKET_LEN, have })?;
        p.set_hardware_type(ArpHardwareType(HTYPE_ETHERNET));
        p.set_protocol_type(EtherType(ethernet::ETHERTYPE_IPV4));
        p.set_hw_addr_len(6);
        p.set_proto_addr_len(4);
        p.set_operation(ArpOperation(self.operation.code()));
        p.set_sender_hw_addr(self.sender_mac.into());
        p.set_sender_proto_addr(self.sender_ip);
        p.set_target_hw_addr(self.target_mac.into());
        p.set_target_proto_addr(self.target_ip);
        Ok(())
    }
}

/// Parses an Ethernet frame carrying ARP; `BadType` if the EtherType is not ARP.
pub fn parse_frame(frame: &[u8]) -> Result<(EthernetRepr, ArpRepr), WireError> {
    let view = ethernet::Frame::new_checked(frame)?;
    let eth = EthernetRepr::parse(&view, ())?;
    if eth.ethertype != ETHERTYPE_ARP {
        return Err(WireError::BadType { what: "Ethernet frame", expected: "0x0806 (ARP)", got: eth.ethertype });
    }
    Ok((eth, super::decode(view.payload(), ())?))
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
pub fn gratuitous(mac: MacAddr, vip: Ipv4Addr, form: GratuitousForm) -> Result<Vec<u8>, WireError> {
    let (operation, target_mac) = match form {
        GratuitousForm::Request => (Operation::Request, MacAddr::ZERO),
        GratuitousForm::Reply => (Operation::Reply, mac),
    };
    let arp = ArpRepr { operation, sender_mac: mac, sender_ip: vip, target_mac, target_ip: vip };
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: mac, ethertype: ETHERTYPE_ARP };
    super::encode(&eth, (), &super::encode(&arp, (), &[])?)
}
