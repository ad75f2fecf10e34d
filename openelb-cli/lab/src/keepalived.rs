//! keepalived as the lab's reference VRRP speaker: the configuration of the failover baseline
//! (docs/testing.md#the-keepalived-baseline) and the command line that runs it in the foreground.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Priority of the first candidate; the next ones get `STEP` less each (never below 1, never 255, which
/// would mean "address owner" and skip the master-down wait).
const TOP_PRIORITY: u8 = 200;
const STEP: u8 = 50;

pub fn priority(rank: usize) -> u8 {
    let drop = u8::try_from(rank).unwrap_or(u8::MAX).saturating_mul(STEP);
    TOP_PRIORITY.saturating_sub(drop).max(1)
}

/// VRID for the lab's single instance: the VIP's last octet (1..=255), as the anchor measurement used.
pub fn vrid(vip: Ipv4Addr) -> u8 {
    vip.octets()[3].max(1)
}

/// keepalived accepts fractional seconds for `advert_int` with VRRPv3; print the shortest exact form.
pub fn advert_int_text(advert: Duration) -> String {
    let cs = (advert.as_millis() / 10).max(1);
    if cs.is_multiple_of(100) { format!("{}", cs / 100) } else { format!("{}.{:02}", cs / 100, cs % 100) }
}

/// One VRRPv3 instance, every node starting as BACKUP (the highest priority wins the master-down race), the
/// VIP as a /32 on eth0 with the node's own MAC (no `use_vmac`, as the seed's `ip neigh` shows).
pub fn config(node: &str, vip: Ipv4Addr, priority: u8, advert: Duration) -> String {
    config_on_vrid(node, vrid(vip), vip, priority, advert)
}

/// [`config`] on a VRID of the caller's choosing (a foreign router on one of our VRIDs).
pub fn config_on_vrid(node: &str, vrid: u8, vip: Ipv4Addr, priority: u8, advert: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "global_defs {{");
    let _ = writeln!(s, "  router_id {node}");
    let _ = writeln!(s, "  vrrp_version 3");
    let _ = writeln!(s, "  vrrp_garp_master_delay 0");
    let _ = writeln!(s, "  vrrp_garp_master_repeat 3");
    let _ = writeln!(s, "  enable_script_security");
    let _ = writeln!(s, "}}");
    let _ = writeln!(s, "vrrp_instance VI_{vrid} {{");
    let _ = writeln!(s, "  state BACKUP");
    let _ = writeln!(s, "  interface eth0");
    let _ = writeln!(s, "  virtual_router_id {vrid}");
    let _ = writeln!(s, "  priority {priority}");
    let _ = writeln!(s, "  advert_int {}", advert_int_text(advert));
    let _ = writeln!(s, "  virtual_ipaddress {{");
    let _ = writeln!(s, "    {vip}/32 dev eth0");
    let _ = writeln!(s, "  }}");
    let _ = writeln!(s, "}}");
    s
}

/// `keepalived -P -n -l -D -f CONF -p PID -r VRRP_PID`: VRRP only, foreground, log to the console, with pid
/// files of its own so several instances can run at once.
pub fn argv(conf: &Path, pidfile: &Path, vrrp_pidfile: &Path) -> Vec<String> {
    let p = |p: &Path| p.display().to_string();
    ["keepalived", "-P", "-n", "-l", "-D", "-f"]
        .into_iter()
        .map(String::from)
        .chain([p(conf), "-p".into(), p(pidfile), "-r".into(), p(vrrp_pidfile)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_vrrpv3_backup_with_the_vip_as_a_host_route_on_eth0() {
        let c = config("worker-p002", Ipv4Addr::new(192, 0, 2, 91), 200, Duration::from_millis(100));
        for needle in [
            "vrrp_version 3",
            "state BACKUP",
            "interface eth0",
            "virtual_router_id 91",
            "priority 200",
            "advert_int 0.10",
            "192.0.2.91/32 dev eth0",
        ] {
            assert!(c.contains(needle), "missing {needle:?} in\n{c}");
        }
        assert!(!c.contains("use_vmac"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn priorities_follow_the_preference_order_and_stay_in_range() {
        assert_eq!((priority(0), priority(1), priority(2)), (200, 150, 100));
        assert_eq!(priority(10), 1);
        assert_eq!(advert_int_text(Duration::from_secs(1)), "1");
        assert_eq!(advert_int_text(Duration::from_millis(250)), "0.25");
    }
}
