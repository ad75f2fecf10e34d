//! Ethernet II and ARP: MAC text forms, the gratuitous ARP frames a takeover sends, and round trips.

use std::net::Ipv4Addr;

use openelb_net::core::vrrp::consts::MULTICAST_V4;
use openelb_net::wire::arp::{self, ArpRepr, GratuitousForm, Operation};
use openelb_net::wire::ethernet::{self, EthernetRepr, Frame, MacAddr};
use openelb_net::wire::{self, Repr, WireError};
use proptest::prelude::*;

const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 91);

#[test]
fn mac_displays_like_ip_neigh() {
    assert_eq!(MAC.to_string(), "52:54:00:12:34:56");
    assert_eq!(MacAddr([0xaa, 0xbb, 0xcc, 0x0d, 0xe, 0xff]).to_string(), "aa:bb:cc:0d:0e:ff");
}

#[test]
fn mac_parses_colon_and_dash_forms_in_any_case() {
    assert_eq!("52:54:00:12:34:56".parse::<MacAddr>(), Ok(MAC));
    assert_eq!("52-54-00-12-34-56".parse::<MacAddr>(), Ok(MAC));
    assert_eq!("AA:bb:Cc:0:e:FF".parse::<MacAddr>(), Ok(MacAddr([0xaa, 0xbb, 0xcc, 0, 0xe, 0xff])));
}

#[test]
fn mac_rejects_malformed_text_and_names_it() {
    for bad in [
        "",
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "52:54:00:12:34:5g",
        "52:54:00:12:34:567",
        "52::00:12:34:56",
        "+1:54:00:12:34:56",
    ] {
        let err = bad.parse::<MacAddr>().unwrap_err();
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn multicast_macs_follow_rfc_1112_and_rfc_2464() {
    assert_eq!(MacAddr::ipv4_multicast(MULTICAST_V4).to_string(), "01:00:5e:00:00:12");
    assert_eq!(MacAddr::ipv4_multicast(Ipv4Addr::new(239, 200, 1, 2)).to_string(), "01:00:5e:48:01:02");
    assert_eq!(MacAddr::ipv6_multicast("ff02::1".parse().unwrap()).to_string(), "33:33:00:00:00:01");
    assert_eq!(MacAddr::ipv6_multicast("ff02::1:ff00:91".parse().unwrap()).to_string(), "33:33:ff:00:00:91");
    assert!(MacAddr::BROADCAST.is_multicast());
    assert!(!MAC.is_multicast());
}

#[test]
fn ethernet_frame_short_of_a_header_is_truncated() {
    assert_eq!(
        Frame::new_checked(&[0u8; 13][..]).err(),
        Some(WireError::Truncated { what: "Ethernet frame", need: 14, have: 13 })
    );
    let mut small = [0u8; 10];
    let eth = EthernetRepr { dst: MacAddr::BROADCAST, src: MAC, ethertype: ethernet::ETHERTYPE_ARP };
    assert!(matches!(eth.emit(&mut small, ()), Err(WireError::Truncated { need: 14, have: 10, .. })));
}

/// The frame `arping -U`-style announcements use, written out byte by byte.
#[test]
fn gratuitous_request_known_answer() {
    let frame = arp::gratuitous(MAC, VIP, GratuitousForm::Request).unwrap();
    #[rustfmt::skip]
    let expected: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // our MAC
        0x08, 0x06,                         // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, 6, 4
        0x00, 0x01,                         // request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        192, 0, 2, 91,                      // sender IP = VIP
        0, 0, 0, 0, 0, 0,                   // target MAC
        192, 0, 2, 91,                      // target IP = VIP
    ];
    assert_eq!(frame, expected);
    let (eth, parsed) = arp::parse_frame(&frame).unwrap();
    assert_eq!(eth.dst, MacAddr::BROADCAST);
    assert!(parsed.is_gratuitous());
}

#[test]
fn gratuitous_reply_form_targets_our_own_mac() {
    let frame = arp::gratuitous(MAC, VIP, GratuitousForm::Reply).unwrap();
    assert_eq!(frame.len(), arp::FRAME_LEN);
    let (eth, parsed) = arp::parse_frame(&frame).unwrap();
    assert_eq!(eth, EthernetRepr { dst: MacAddr::BROADCAST, src: MAC, ethertype: ethernet::ETHERTYPE_ARP });
    assert_eq!(
        parsed,
        ArpRepr { operation: Operation::Reply, sender_mac: MAC, sender_ip: VIP, target_mac: MAC, target_ip: VIP }
    );
}

#[test]
fn arp_parse_refuses_non_ethernet_ipv4_and_unknown_operations() {
    let good = ArpRepr {
        operation: Operation::Request,
        sender_mac: MAC,
        sender_ip: VIP,
        target_mac: MacAddr::ZERO,
        target_ip: Ipv4Addr::new(192, 0, 2, 5),
    };
    let good = wire::encode(&good, (), &[]).unwrap();
    let mut b = good.clone();
    b[1] = 6; // IEEE 802 hardware
    assert!(matches!(wire::decode::<ArpRepr>(&b, ()), Err(WireError::Malformed { .. })));
    let mut b = good.clone();
    b[5] = 16; // protocol length of IPv6
    assert!(matches!(wire::decode::<ArpRepr>(&b, ()), Err(WireError::Malformed { .. })));
    let mut b = good.clone();
    b[7] = 3; // RARP request
    assert!(matches!(wire::decode::<ArpRepr>(&b, ()), Err(WireError::BadType { got: 3, .. })));
    assert_eq!(
        wire::decode::<ArpRepr>(&good[..27], ()),
        Err(WireError::Truncated { what: "ARP packet", need: 28, have: 27 })
    );
}

#[test]
fn arp_parse_frame_refuses_other_ethertypes() {
    let mut frame = arp::gratuitous(MAC, VIP, GratuitousForm::Request).unwrap();
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    assert!(matches!(arp::parse_frame(&frame), Err(WireError::BadType { got: 0x0800, .. })));
}

#[test]
fn arp_parse_ignores_ethernet_padding() {
    let mut frame = arp::gratuitous(MAC, VIP, GratuitousForm::Request).unwrap();
    frame.resize(60, 0);
    assert!(arp::parse_frame(&frame).is_ok());
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

proptest! {
    #[test]
    fn mac_text_round_trip(m in mac()) {
        prop_assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
    }

    #[test]
    fn ethernet_round_trip(
        dst in mac(),
        src in mac(),
        ethertype in any::<u16>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let repr = EthernetRepr { dst, src, ethertype };
        let frame = wire::encode(&repr, (), &payload).unwrap();
        let view = Frame::new_checked(&frame).unwrap();
        prop_assert_eq!(EthernetRepr::parse(&view, ()), Ok(repr));
        prop_assert_eq!(view.payload(), &payload[..]);
        let mut buf = [0u8; 14];
        repr.emit(&mut buf, ()).unwrap();
        prop_assert_eq!(&buf[..], &frame[..14]);
    }

    #[test]
    fn arp_round_trip(
        reply in any::<bool>(),
        sm in mac(),
        si in any::<[u8; 4]>(),
        tm in mac(),
        ti in any::<[u8; 4]>(),
    ) {
        let repr = ArpRepr {
            operation: if reply { Operation::Reply } else { Operation::Request },
            sender_mac: sm,
            sender_ip: si.into(),
            target_mac: tm,
            target_ip: ti.into(),
        };
        let mut buf = [0u8; 28];
        repr.emit(&mut buf, ()).unwrap();
        prop_assert_eq!(wire::decode::<ArpRepr>(&buf, ()), Ok(repr));
    }

    #[test]
    fn gratuitous_round_trip(m in mac(), vip in any::<[u8; 4]>(), reply in any::<bool>()) {
        let form = if reply { GratuitousForm::Reply } else { GratuitousForm::Request };
        let vip = Ipv4Addr::from(vip);
        let (eth, a) = arp::parse_frame(&arp::gratuitous(m, vip, form).unwrap()).unwrap();
        prop_assert_eq!(eth.src, m);
        prop_assert_eq!((a.sender_mac, a.sender_ip, a.target_ip), (m, vip, vip));
    }
}
