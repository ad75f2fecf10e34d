//! Who answers ARP for an address: iputils' `arping` from a namespace, one reply line per answering node per
//! request, reduced to the distinct MACs. The kube-proxy IPVS tests count them (exactly one answerer per VIP).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anyhow::Result;

use crate::netns;

/// The MACs (upper case, as arping prints them) that answered `count` requests for `target` sent from `ns` on
/// `iface`: one second apart, so this takes about `count` seconds. No answer is an empty set, not an error.
pub fn answerers(ns: &str, iface: &str, target: Ipv4Addr, count: u32) -> Result<BTreeSet<String>> {
    let (count, target) = (count.to_string(), target.to_string());
    let out = netns::exec_output(ns, &["arping", "-c", &count, "-I", iface, &target])?;
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// `Unicast reply from 192.0.2.100 [9E:15:90:DA:A1:5F]  0.529ms` → `9E:15:90:DA:A1:5F`.
fn parse(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter(|l| l.contains("reply from"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn distinct_macs_of_the_reply_lines() {
        let out = "ARPING 192.0.2.100 from 192.0.2.1 eth0\n\
                   Unicast reply from 192.0.2.100 [9E:15:90:DA:A1:5F]  0.529ms\n\
                   Unicast reply from 192.0.2.100 [02:42:C0:00:02:0B]  0.6ms\n\
                   Unicast reply from 192.0.2.100 [9E:15:90:DA:A1:5F]  0.535ms\n\
                   Sent 2 probes (1 broadcast(s))\nReceived 3 response(s)\n";
        let got: Vec<String> = super::parse(out).into_iter().collect();
        assert_eq!(got, ["02:42:C0:00:02:0B", "9E:15:90:DA:A1:5F"]);
        assert!(super::parse("Sent 2 probes\nReceived 0 response(s)\n").is_empty());
    }
}
