//! The ARP settings the kernel applies to an interface, read from `/proc/sys/net/ipv4/conf`, which shows the
//! network namespace of the reading thread.

use openelb_core::ipvs_arp::ArpConf;

use crate::ops::NetError;

fn read(scope: &str, name: &str) -> Result<u32, NetError> {
    let path = format!("/proc/sys/net/ipv4/conf/{scope}/{name}");
    let text = std::fs::read_to_string(&path).map_err(|source| NetError::Io {
        iface: scope.to_string(),
        op: format!("read {path}"),
        source,
    })?;
    text.trim().parse().map_err(|e| NetError::Io {
        iface: scope.to_string(),
        op: format!("read {path}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{:?}: {e}", text.trim())),
    })
}

/// `arp_ignore` and `arp_announce` of `scope` (`all` or an interface name) as written.
pub(crate) fn arp_conf(scope: &str) -> Result<ArpConf, NetError> {
    Ok(ArpConf { ignore: read(scope, "arp_ignore")?, announce: read(scope, "arp_announce")? })
}

/// What the kernel applies on `nic`, given the `all` values.
pub(crate) fn effective(all: ArpConf, nic: &str) -> Result<ArpConf, NetError> {
    Ok(ArpConf::effective(all, arp_conf(nic)?))
}
