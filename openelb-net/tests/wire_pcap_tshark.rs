//! Independent decoding of our adverts: writes a classic pcap with an IPv4 and an IPv6 VRRPv3 advert (and a
//! GARP and an unsolicited NA) and asks `tshark` to decode them. The decoding test needs tshark (ignored
//! otherwise; scripts/test.sh installs it and runs it); the pcap layout is checked everywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

use openelb_lab::{Need, require};
use openelb_net::core::vrrp::Advert;
use openelb_net::core::vrrp::consts::{MULTICAST_V4, MULTICAST_V6};
use openelb_net::wire::arp::{self, GratuitousForm};
use openelb_net::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetRepr, MacAddr};
use openelb_net::wire::{self, icmpv6, vrrp};

const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

/// libpcap's classic format: magic, version 2.4, zone 0, sigfigs 0, snaplen, link type 1 (Ethernet),
/// then per frame a 16-byte record header (seconds, microseconds, captured and original length).
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn frames() -> Vec<Vec<u8>> {
    let src4 = Ipv4Addr::new(192, 0, 2, 3);
    let a4 = Advert {
        vrid: 51,
        priority: 100,
        max_advert_int: 100,
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 91))],
    };
    let v4 = vrrp::ipv4_packet(&a4, src4, MULTICAST_V4).unwrap();
    let eth4 = EthernetRepr { dst: MacAddr::ipv4_multicast(MULTICAST_V4), src: MAC, ethertype: ETHERTYPE_IPV4 };
    let ll: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
    let vip6: Ipv6Addr = "2001:db8::91".parse().unwrap();
    let a6 = Advert { vrid: 52, priority: 150, max_advert_int: 100, addresses: vec![IpAddr::V6(vip6)] };
    let v6 = vrrp::ipv6_packet(&a6, ll, MULTICAST_V6).unwrap();
    let eth6 = EthernetRepr { dst: MacAddr::ipv6_multicast(MULTICAST_V6), src: MAC, ethertype: ETHERTYPE_IPV6 };
    vec![
        wire::encode(&eth4, (), &v4).unwrap(),
        wire::encode(&eth6, (), &v6).unwrap(),
        arp::gratuitous(MAC, Ipv4Addr::new(192, 0, 2, 91), GratuitousForm::Request).unwrap(),
        icmpv6::unsolicited_na_frame(MAC, ll, vip6).unwrap(),
    ]
}

#[test]
fn pcap_layout_is_classic_libpcap() {
    let f = frames();
    let p = pcap(&f);
    assert_eq!(&p[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(p.len(), 24 + f.iter().map(|x| 16 + x.len()).sum::<usize>());
    assert_eq!(u32::from_le_bytes(p[24 + 8..24 + 12].try_into().unwrap()) as usize, f[0].len());
}

/// Decodes `path` with `-o vrrp.v3_checksum_as_in_v2:<v2_form>` (Wireshark 4.0's name for keepalived's
/// `v3_checksum_as_v2`) and returns one `|`-separated field list per frame.
fn tshark_fields(path: &std::path::Path, v2_form: bool) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-o", &format!("vrrp.v3_checksum_as_in_v2:{}", if v2_form { "TRUE" } else { "FALSE" })])
        .args(["-T", "fields", "-E", "separator=|"])
        .args(["-e", "vrrp.version", "-e", "vrrp.type", "-e", "vrrp.virt_rtr_id", "-e", "vrrp.checksum.status"])
        .args(["-e", "arp.isgratuitous", "-e", "icmpv6.type", "-e", "icmpv6.checksum.status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('|').map(str::to_owned).collect()).collect()
}

#[test]
#[ignore = "needs tshark (scripts/test.sh installs it)"]
fn tshark_decodes_our_adverts_as_valid_vrrpv3() {
    require(&[Need::Tool("tshark")]);
    let path: PathBuf = std::env::temp_dir().join(format!("oelb-wire-{}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames())).unwrap();
    let lines = tshark_fields(&path, false);
    let v2_form = tshark_fields(&path, true);
    let _ = std::fs::remove_file(&path);

    assert_eq!(lines.len(), 4, "{lines:?}");
    // Wireshark's checksum status: 0 = bad, 1 = good, 2 = unverified.
    for (line, vrid) in [(&lines[0], "51"), (&lines[1], "52")] {
        assert_eq!(line[..4], ["3", "1", vrid, "1"], "version, type, VRID, checksum status: {lines:?}");
    }
    assert_eq!(lines[2][4], "1", "GARP not recognised as gratuitous: {lines:?}");
    assert_eq!(lines[3][5..7], ["136", "1"], "NA type and checksum status: {lines:?}");
    // Control: told to expect the message-only form, tshark flags our IPv4 advert (so it really checks the
    // pseudo-header variant above), while IPv6 is unaffected.
    assert_eq!(v2_form[0][3], "0", "{v2_form:?}");
    assert_eq!(v2_form[1][3], "1", "{v2_form:?}");
}
