//! Service lifecycle rules: which Services are ours, what they request, and when an address they hold must be
//! given back. Pure functions over the Service as written; the IPAM ([`crate::ipam`]) applies them.
//!
//! Where these part from upstream (no annotations, `loadBalancerClass`, the protocol annotation, stickiness):
//! docs/compatibility.md#where-we-differ-and-why; the holding rule: docs/allocation.md#sticky-addresses.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::model::{
    ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_LB_VALUE, ANNOTATION_PROTOCOL, FINALIZER_SERVICE,
    LABEL_EIP_POOL, LOAD_BALANCER_CLASS, Pool, Protocol, Service, TrafficPolicy,
};
use crate::reserved::{self, ReservedIp};

/// `spec.type` of the Services we serve.
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";

/// Type `LoadBalancer` and opted in by annotation or class. Deletion is judged separately ([`unwanted`]).
pub fn is_ours(svc: &Service) -> bool {
    svc.type_ == TYPE_LOAD_BALANCER && opted_in(svc)
}

fn opted_in(svc: &Service) -> bool {
    svc.annotations.get(ANNOTATION_LB).is_some_and(|v| v == ANNOTATION_LB_VALUE)
        || svc.load_balancer_class.as_deref() == Some(LOAD_BALANCER_CLASS)
}

/// Whether the Service shows that we allocated for it once (our label or finalizer). Such a Service must be
/// cleaned up even after it stops being ours; an ingress alone proves nothing, another controller may own it.
pub fn has_our_marks(svc: &Service) -> bool {
    svc.labels.contains_key(LABEL_EIP_POOL) || svc.finalizers.iter().any(|f| f == FINALIZER_SERVICE)
}

/// Why a Service must not hold an address at all, or `None` when it is ours and alive.
pub fn unwanted(svc: &Service) -> Option<ReleaseReason> {
    if svc.deleting {
        Some(ReleaseReason::Deleting)
    } else if svc.type_ != TYPE_LOAD_BALANCER {
        Some(ReleaseReason::NotLoadBalancer { type_: svc.type_.clone() })
    } else if !opted_in(svc) {
        Some(ReleaseReason::OptedOut)
    } else {
        None
    }
}

/// What a Service asks for. Every field `None` means "any address from the pool the rules pick".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// Pool pin, annotation `eip.openelb.kubesphere.io/v1alpha2`.
    pub pool: Option<String>,
    /// Annotation `eip.openelb.kubesphere.io/v1alpha1`, else `spec.loadBalancerIP`.
    pub ip: Option<IpAddr>,
    /// Annotation `protocol.openelb.kubesphere.io/v1alpha1`.
    pub protocol: Option<Protocol>,
}

/// A request that cannot be honoured as written. Messages name the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{field}={value:?} is not an IP address")]
    MalformedIp { field: String, value: String },
    #[error("{field}={value:?}: {reserved}")]
    ReservedIp { field: String, value: String, reserved: ReservedIp },
    #[error("annotation {ANNOTATION_PROTOCOL}={value:?} is not a protocol: expected \"bgp\", \"layer2\" or \"vip\"")]
    UnknownProtocol { value: String },
}

/// Reads the request. Empty values count as absent, so an emptied annotation falls back to the next source.
pub fn request(svc: &Service) -> Result<Request, RequestError> {
    let pool = non_empty(svc.annotations.get(ANNOTATION_EIP_POOL).map(String::as_str)).map(str::to_string);
    let ip_source = match non_empty(svc.annotations.get(ANNOTATION_EIP_IP).map(String::as_str)) {
        Some(v) => Some((format!("annotation {ANNOTATION_EIP_IP}"), v)),
        None => non_empty(svc.load_balancer_ip.as_deref()).map(|v| ("spec.loadBalancerIP".to_string(), v)),
    };
    let ip = match ip_source {
        None => None,
        Some((field, value)) => match value.parse::<IpAddr>() {
            Ok(ip) => match reserved::classify(ip) {
                None => Some(ip),
                Some(reserved) => return Err(RequestError::ReservedIp { field, value: value.to_string(), reserved }),
            },
            Err(_) => return Err(RequestError::MalformedIp { field, value: value.to_string() }),
        },
    };
    let protocol = match non_empty(svc.annotations.get(ANNOTATION_PROTOCOL).map(String::as_str)) {
        None => None,
        Some("bgp") => Some(Protocol::Bgp),
        Some("layer2") => Some(Protocol::Layer2),
        Some("vip") => Some(Protocol::Vip),
        Some(other) => return Err(RequestError::UnknownProtocol { value: other.to_string() }),
    };
    Ok(Request { pool, ip, protocol })
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

/// Why an address is given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseReason {
    Deleting,
    NotLoadBalancer {
        type_: String,
    },
    OptedOut,
    PinChanged {
        held_in: String,
        pinned: String,
    },
    IpChanged {
        held: IpAddr,
        requested: IpAddr,
    },
    ProtocolChanged {
        pool: String,
        pool_protocol: Protocol,
        requested: Protocol,
    },
    /// The pool is gone (one that is only being deleted keeps its holders: see [`check_holding`]).
    PoolDeleted {
        pool: String,
    },
    /// The Service shows an address no pool records, and the pool its label names does not contain it.
    OutsidePool {
        ip: IpAddr,
        pool: String,
    },
    /// The request is malformed; nothing can be held for it.
    InvalidRequest {
        error: RequestError,
    },
    /// The Service shows an address no pool records for it, and it cannot be adopted.
    NotAdoptable {
        ip: IpAddr,
        why: String,
    },
    /// No host can hold the address (an allocation that predates the rule, or a status written by hand).
    Reserved(ReservedIp),
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseReason::Deleting => f.write_str("the Service is being deleted"),
            ReleaseReason::NotLoadBalancer { type_ } => {
                write!(f, "spec.type is {type_:?}, not {TYPE_LOAD_BALANCER:?}")
            }
            ReleaseReason::OptedOut => write!(
                f,
                "neither annotation {ANNOTATION_LB}={ANNOTATION_LB_VALUE} nor spec.loadBalancerClass \
                 {LOAD_BALANCER_CLASS} is set"
            ),
            ReleaseReason::PinChanged { held_in, pinned } => {
                write!(f, "pinned to Eip {pinned} but the address is from Eip {held_in}")
            }
            ReleaseReason::IpChanged { held, requested } => {
                write!(f, "requested address changed from {held} to {requested}")
            }
            ReleaseReason::ProtocolChanged { pool, pool_protocol, requested } => write!(
                f,
                "protocol annotation says {requested} but the address is from Eip {pool} of protocol {pool_protocol}"
            ),
            ReleaseReason::PoolDeleted { pool } => write!(f, "Eip {pool} was deleted"),
            ReleaseReason::OutsidePool { ip, pool } => write!(f, "{ip} is no longer inside Eip {pool}"),
            ReleaseReason::InvalidRequest { error } => write!(f, "{error}"),
            ReleaseReason::NotAdoptable { ip, why } => write!(f, "{ip} cannot be kept: {why}"),
            ReleaseReason::Reserved(r) => write!(f, "{r}"),
        }
    }
}

/// Whether an address the Service holds in `pool_name` still answers its request. `pool` is `None` when the
/// pool no longer exists.
///
/// Only a changed request (pin, address, protocol), a pool that is gone, or an address no host can hold
/// ([`crate::reserved`]) releases. A pool that is disabled, being deleted (its Eip's finalizer holds it until
/// the last holder lets go), shrunk under its holders or invalid for any other reason
/// ([`crate::pool_invalid`]) keeps what it gave out: it drains (docs/allocation.md#sticky-addresses,
/// docs/allocation.md#draining-pools).
pub fn check_holding(req: &Request, pool_name: &str, pool: Option<&Pool>, ip: IpAddr) -> Result<(), ReleaseReason> {
    if let Some(r) = reserved::classify(ip) {
        return Err(ReleaseReason::Reserved(r));
    }
    let Some(pool) = pool else {
        return Err(ReleaseReason::PoolDeleted { pool: pool_name.to_string() });
    };
    if let Some(pinned) = &req.pool
        && pinned != pool_name
    {
        return Err(ReleaseReason::PinChanged { held_in: pool_name.to_string(), pinned: pinned.clone() });
    }
    if let Some(requested) = req.ip
        && requested != ip
    {
        return Err(ReleaseReason::IpChanged { held: ip, requested });
    }
    if let Some(requested) = req.protocol
        && requested != pool.protocol
    {
        return Err(ReleaseReason::ProtocolChanged {
            pool: pool_name.to_string(),
            pool_protocol: pool.protocol,
            requested,
        });
    }
    Ok(())
}

/// What of a Service decides whether it may share an address with another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareProfile {
    /// `(port, protocol)`; protocol upper-cased, `TCP` when unset.
    pub ports: Vec<(i32, String)>,
    pub policy: TrafficPolicy,
    pub selector: BTreeMap<String, String>,
}

impl ShareProfile {
    pub fn of(svc: &Service) -> Self {
        let mut ports: Vec<(i32, String)> = svc
            .ports
            .iter()
            .map(|p| {
                let proto = p.protocol.trim();
                (p.port, if proto.is_empty() { "TCP".to_string() } else { proto.to_ascii_uppercase() })
            })
            .collect();
        ports.sort();
        ports.dedup();
        Self { ports, policy: svc.external_traffic_policy, selector: svc.selector.clone() }
    }

    /// Why `self` cannot share an address with `other`, if it cannot. Two sharers on the same port and protocol
    /// would split one listener between unrelated backends; with `Local` policy the announcing nodes follow the
    /// endpoints, so sharers must select the same Pods or one of them is announced where it has no backend.
    pub fn conflict_with(&self, other: &ShareProfile) -> Option<ShareConflict> {
        if let Some((port, protocol)) = self.ports.iter().find(|p| other.ports.contains(p)) {
            return Some(ShareConflict::Port { port: *port, protocol: protocol.clone() });
        }
        let local = self.policy == TrafficPolicy::Local || other.policy == TrafficPolicy::Local;
        if local && self.selector != other.selector {
            return Some(ShareConflict::LocalSelector);
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareConflict {
    Port { port: i32, protocol: String },
    LocalSelector,
}

impl fmt::Display for ShareConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareConflict::Port { port, protocol } => write!(f, "both use port {port}/{protocol}"),
            ShareConflict::LocalSelector => f.write_str(
                "externalTrafficPolicy Local needs every Service sharing an address to have the same selector",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        let mut s = Service {
            namespace: "default".into(),
            name: "web".into(),
            type_: TYPE_LOAD_BALANCER.into(),
            ..Default::default()
        };
        s.annotations.insert(ANNOTATION_LB.into(), ANNOTATION_LB_VALUE.into());
        s
    }

    #[test]
    fn ours_by_annotation_or_class_only_when_load_balancer() {
        assert!(is_ours(&svc()));
        let mut by_class = svc();
        by_class.annotations.clear();
        by_class.load_balancer_class = Some(LOAD_BALANCER_CLASS.into());
        assert!(is_ours(&by_class));
        let mut porter = svc();
        porter.annotations.insert(ANNOTATION_LB.into(), "porter".into());
        assert!(!is_ours(&porter));
        assert_eq!(unwanted(&porter), Some(ReleaseReason::OptedOut));
        let mut cluster_ip = svc();
        cluster_ip.type_ = "ClusterIP".into();
        assert!(!is_ours(&cluster_ip));
        assert!(matches!(unwanted(&cluster_ip), Some(ReleaseReason::NotLoadBalancer { .. })));
        let mut deleting = svc();
        deleting.deleting = true;
        assert_eq!(unwanted(&deleting), Some(ReleaseReason::Deleting));
    }

    #[test]
    fn annotation_ip_wins_over_load_balancer_ip() {
        let mut s = svc();
        s.load_balancer_ip = Some("192.168.0.95".into());
        assert_eq!(request(&s).unwrap().ip, Some("192.168.0.95".parse().unwrap()));
        s.annotations.insert(ANNOTATION_EIP_IP.into(), "192.168.0.92".into());
        assert_eq!(request(&s).unwrap().ip, Some("192.168.0.92".parse().unwrap()));
        s.annotations.insert(ANNOTATION_EIP_IP.into(), "".into());
        assert_eq!(request(&s).unwrap().ip, Some("192.168.0.95".parse().unwrap()));
    }

    #[test]
    fn malformed_ip_names_field_and_value() {
        let mut s = svc();
        s.load_balancer_ip = Some("192.168.0.300".into());
        let e = request(&s).unwrap_err().to_string();
        assert!(e.contains("spec.loadBalancerIP") && e.contains("192.168.0.300"), "{e}");
        s.annotations.insert(ANNOTATION_EIP_IP.into(), "nope".into());
        let e = request(&s).unwrap_err().to_string();
        assert!(e.contains(ANNOTATION_EIP_IP) && e.contains("nope"), "{e}");
    }

    #[test]
    fn unknown_protocol_is_an_error_naming_it() {
        let mut s = svc();
        s.annotations.insert(ANNOTATION_PROTOCOL.into(), "ospf".into());
        let e = request(&s).unwrap_err().to_string();
        assert!(e.contains("ospf") && e.contains(ANNOTATION_PROTOCOL), "{e}");
        s.annotations.insert(ANNOTATION_PROTOCOL.into(), "vip".into());
        assert_eq!(request(&s).unwrap().protocol, Some(Protocol::Vip));
    }

    #[test]
    fn marks_are_label_or_finalizer() {
        let mut s = svc();
        s.ingress = vec!["10.0.0.1".into()];
        assert!(!has_our_marks(&s));
        s.labels.insert(LABEL_EIP_POOL.into(), "p".into());
        assert!(has_our_marks(&s));
        s.labels.clear();
        s.finalizers.push(FINALIZER_SERVICE.into());
        assert!(has_our_marks(&s));
    }

    #[test]
    fn a_pool_being_deleted_keeps_its_holders_and_a_gone_one_releases() {
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        let mut pool = Pool { name: "p".into(), address: "192.0.2.1-192.0.2.9".into(), ..Default::default() };
        let req = Request::default();
        assert_eq!(check_holding(&req, "p", Some(&pool), ip), Ok(()));
        pool.deleting = true;
        pool.disable = true;
        assert_eq!(check_holding(&req, "p", Some(&pool), ip), Ok(()));
        let gone = check_holding(&req, "p", None, ip).unwrap_err();
        assert_eq!(gone, ReleaseReason::PoolDeleted { pool: "p".into() });
        assert_eq!(gone.to_string(), "Eip p was deleted");
        // Draining does not excuse a changed request.
        let pinned = Request { pool: Some("q".into()), ..Default::default() };
        assert!(matches!(check_holding(&pinned, "p", Some(&pool), ip), Err(ReleaseReason::PinChanged { .. })));
    }

    #[test]
    fn a_shrunk_pool_keeps_its_holders_and_a_reserved_address_is_released() {
        let pool = Pool { name: "p".into(), address: "192.0.2.1-192.0.2.2".into(), ..Default::default() };
        let req = Request::default();
        assert_eq!(check_holding(&req, "p", Some(&pool), "192.0.2.5".parse().unwrap()), Ok(()));
        let loopback = check_holding(&req, "p", Some(&pool), "127.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            loopback.to_string(),
            "127.0.0.1 is a loopback address (127.0.0.0/8), which no host can hold as a VIP"
        );
    }

    #[test]
    fn a_reserved_request_names_field_value_and_kind() {
        let mut s = svc();
        s.load_balancer_ip = Some("224.0.0.18".into());
        assert_eq!(
            request(&s).unwrap_err().to_string(),
            "spec.loadBalancerIP=\"224.0.0.18\": 224.0.0.18 is a multicast address (224.0.0.0/4), which no host \
             can hold as a VIP"
        );
        s.annotations.insert(ANNOTATION_EIP_IP.into(), "::ffff:192.0.2.1".into());
        let e = request(&s).unwrap_err().to_string();
        assert!(e.starts_with(&format!("annotation {ANNOTATION_EIP_IP}=\"::ffff:192.0.2.1\": ")), "{e}");
        assert!(e.contains("IPv4-mapped"), "{e}");
    }

    #[test]
    fn share_conflicts() {
        let mut a = svc();
        a.ports = vec![crate::model::ServicePort { port: 80, protocol: "TCP".into(), ..Default::default() }];
        let mut b = a.clone();
        assert!(matches!(
            ShareProfile::of(&a).conflict_with(&ShareProfile::of(&b)),
            Some(ShareConflict::Port { port: 80, .. })
        ));
        b.ports[0].protocol = "UDP".into();
        assert_eq!(ShareProfile::of(&a).conflict_with(&ShareProfile::of(&b)), None);
        b.external_traffic_policy = TrafficPolicy::Local;
        b.selector.insert("app".into(), "b".into());
        assert_eq!(ShareProfile::of(&a).conflict_with(&ShareProfile::of(&b)), Some(ShareConflict::LocalSelector));
    }
}
