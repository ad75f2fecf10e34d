//! Where the speaker serves `/metrics`, `/healthz` and `/readyz` (`--metrics-addr`).
//!
//! The speaker runs in the host's network namespace on every node, so a wildcard address would serve its
//! metrics on every interface of the node, the VIP LAN included. By default it binds only the node's
//! InternalIP (read from its Node object, or its manifest), where the kubelet's probes of a host-network Pod and
//! an in-cluster Prometheus reach it.
//!
//! The default port, 8477 ("VIPS" on a phone keypad), is outside the Prometheus exporters' allocation
//! (9100-9999, full since 2023) and not a port of MetalLB (7472, 7473, 7946), kube-vip (2112), Cilium (4240,
//! 4244, 9962-9965), Calico (5473, 9091, 9099) or upstream OpenELB, so it can run beside any of them on a node.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The default port of `/metrics`, `/healthz` and `/readyz`.
pub const DEFAULT_METRICS_PORT: u16 = 8477;
/// How `--metrics-addr` names the node's InternalIP.
pub const INTERNAL_IP: &str = "internal-ip";

/// `--metrics-addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    /// `off`: nothing served (and no probes possible).
    Off,
    /// `internal-ip:PORT` (the default): the node's InternalIP, known once its Node object is read.
    InternalIp(u16),
    /// `ADDRESS:PORT`, as given (`0.0.0.0:PORT` serves on every interface of the node).
    At(SocketAddr),
}

impl Default for MetricsAddr {
    fn default() -> Self {
        MetricsAddr::InternalIp(DEFAULT_METRICS_PORT)
    }
}

impl MetricsAddr {
    /// The port (0 for `off`).
    pub fn port(self) -> u16 {
        match self {
            MetricsAddr::Off => 0,
            MetricsAddr::InternalIp(port) => port,
            MetricsAddr::At(addr) => addr.port(),
        }
    }

    /// The socket address, given the node's InternalIP if it has one; `Ok(None)` for `off`.
    pub fn resolve(self, internal_ip: Option<IpAddr>) -> Result<Option<SocketAddr>, String> {
        match self {
            MetricsAddr::Off => Ok(None),
            MetricsAddr::At(addr) => Ok(Some(addr)),
            MetricsAddr::InternalIp(port) => match internal_ip {
                Some(ip) => Ok(Some(SocketAddr::new(ip, port))),
                None => Err(format!(
                    "--metrics-addr {self}: this node's Node object shows no InternalIP; pass --metrics-addr \
                     ADDRESS:PORT (or off)"
                )),
            },
        }
    }
}

impl fmt::Display for MetricsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsAddr::Off => f.write_str("off"),
            MetricsAddr::InternalIp(port) => write!(f, "{INTERNAL_IP}:{port}"),
            MetricsAddr::At(addr) => write!(f, "{addr}"),
        }
    }
}

/// `internal-ip:PORT`, `ADDRESS:PORT` or `off`.
pub fn parse_metrics_addr(value: &str) -> Result<MetricsAddr, String> {
    let expected = || {
        format!("{value:?}: expected {INTERNAL_IP}:PORT, ADDRESS:PORT (e.g. 192.0.2.10:{DEFAULT_METRICS_PORT}) or off")
    };
    match value {
        "off" => Ok(MetricsAddr::Off),
        v => match v.strip_prefix(INTERNAL_IP).and_then(|rest| rest.strip_prefix(':')) {
            Some(port) => port.parse::<u16>().map(MetricsAddr::InternalIp).map_err(|_| expected()),
            None => v.parse::<SocketAddr>().map(MetricsAddr::At).map_err(|_| expected()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_parse_and_print_back() {
        for text in ["off", "internal-ip:8477", "192.0.2.10:9000", "[2001:db8::1]:8477"] {
            assert_eq!(parse_metrics_addr(text).unwrap().to_string(), text);
        }
        assert_eq!(MetricsAddr::default(), MetricsAddr::InternalIp(DEFAULT_METRICS_PORT));
        for bad in ["localhost", "internal-ip", "internal-ip:http", "internal-ip:70000", "192.0.2.10", " off", ""] {
            let err = parse_metrics_addr(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("internal-ip:PORT"), "{err}");
        }
    }

    #[test]
    fn internal_ip_needs_the_nodes_address() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let default = MetricsAddr::default();
        assert_eq!(default.resolve(Some(ip)), Ok(Some(SocketAddr::new(ip, DEFAULT_METRICS_PORT))));
        assert!(default.resolve(None).unwrap_err().contains("no InternalIP"));
        assert_eq!(MetricsAddr::Off.resolve(None), Ok(None));
        let at: SocketAddr = "198.51.100.1:1".parse().unwrap();
        assert_eq!(MetricsAddr::At(at).resolve(Some(ip)), Ok(Some(at)));
    }
}
