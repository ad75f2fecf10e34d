//! Prometheus metrics of the controller (served by [`openelb_k8s::serve`]).
//!
//! - `openelb_eip_pool_size{eip}`, `openelb_eip_usage{eip}`: read from the Eip cache at each scrape, so a
//!   deleted Eip disappears without bookkeeping and a standby shows what the leader wrote. Sizes are floats:
//!   an IPv6 pool's size does not fit an integer gauge, and Prometheus stores floats anyway.
//! - `openelb_allocations_total`, `openelb_allocation_failures_total{reason}`: what reconciles decided.
//!   `reason` is a small fixed set (see [`failure_kind`]); the full text is in the Service's Event.
//! - `openelb_reconcile_duration_seconds{kind}`: one reconcile of a Service or an Eip, writes included.
//! - `openelb_reconcile_errors_total{kind,error}`: reconciles that failed, by object kind and
//!   [`ReconcileErrorKind`] (the message is in the log).
//! - `openelb_services_verified`: Services of ours reconciled in this leadership term with nothing to write (a
//!   restart is done when it reaches the number of Services; reconciles count Eips and repeats too).
//! - `openelb_leader`: 1 while this replica holds the Lease (or runs without leader election).
//! - `openelb_objects_undecodable_total{kind}`: watched objects that did not decode as their kind, once per
//!   distinct error (the object, field and value are in the log, and for an Eip in its conditions).
//! - `openelb_vrrp_plan_issues{kind}`, `openelb_vrrp_published_groups`, `openelb_vrrp_published_foreign_vrids`,
//!   `openelb_vrrp_assignment_writes_total`, `openelb_vrrp_assignment_errors_total`: the VRID assignment the
//!   leader publishes (`vrid_publish`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use openelb_core::addr::AddrRange;

use openelb_k8s::crd::Eip;
use openelb_k8s::serve::KindLabels;

use super::reconcile::ReconcileErrorKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub error: ReconcileErrorKind,
}

impl EncodeLabelValue for ReconcileErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 1 ms to about 16 s: a reconcile is a few API round trips.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

#[derive(Clone)]
pub struct Metrics {
    pub allocations: Counter,
    pub allocation_failures: Family<FailureLabels, Counter>,
    pub reconcile_duration: HistogramFamily,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub leader: Gauge,
    pub services_verified: Gauge,
    pub objects_undecodable: Family<KindLabels, Counter>,
    pub vrrp_plan_issues: Family<KindLabels, Gauge>,
    pub vrrp_published_groups: Gauge,
    pub vrrp_foreign_vrids: Gauge,
    pub vrrp_assignment_writes: Counter,
    pub vrrp_assignment_errors: Counter,
}

impl Metrics {
    /// Registers the controller's metrics in `registry`; the per-Eip gauges read `eips` at each scrape.
    pub fn register(registry: &mut Registry, eips: Store<Eip>) -> Self {
        let metrics = Metrics {
            allocations: Counter::default(),
            allocation_failures: Family::default(),
            reconcile_duration: HistogramFamily::new_with_constructor(duration_histogram),
            reconcile_errors: Family::default(),
            leader: Gauge::default(),
            services_verified: Gauge::default(),
            objects_undecodable: Family::default(),
            vrrp_plan_issues: Family::default(),
            vrrp_published_groups: Gauge::default(),
            vrrp_foreign_vrids: Gauge::default(),
            vrrp_assignment_writes: Counter::default(),
            vrrp_assignment_errors: Counter::default(),
        };
        registry.register("openelb_allocations", "Addresses assigned to Services", metrics.allocations.clone());
        registry.register(
            "openelb_allocation_failures",
            "Services that wanted an address and could not get one, by kind of reason",
            metrics.allocation_failures.clone(),
        );
        registry.register(
            "openelb_reconcile_duration_seconds",
            "Duration of one reconcile of a Service or an Eip, writes included",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "openelb_reconcile_errors",
            "Reconciles that failed, by object kind and kind of error",
            metrics.reconcile_errors.clone(),
        );
        registry.register("openelb_leader", "1 while this replica is the one that writes", metrics.leader.clone());
        registry.register(
            "openelb_services_verified",
            "LoadBalancer Services of ours reconciled in this leadership term with nothing to write",
            metrics.services_verified.clone(),
        );
        for kind in ["Eip", "Service", "Namespace"] {
            metrics.undecodable(kind);
        }
        registry.register(
            "openelb_objects_undecodable",
            "Watched objects that did not decode as their kind (once per distinct error), by kind",
            metrics.objects_undecodable.clone(),
        );
        registry.register(
            "openelb_vrrp_plan_issues",
            "Approximations in the VRRP plan the published VRID assignment comes from, by kind",
            metrics.vrrp_plan_issues.clone(),
        );
        registry.register(
            "openelb_vrrp_published_groups",
            "VRRP groups in the published VRID assignment",
            metrics.vrrp_published_groups.clone(),
        );
        registry.register(
            "openelb_vrrp_published_foreign_vrids",
            "VRIDs published as used by foreign VRRP routers",
            metrics.vrrp_foreign_vrids.clone(),
        );
        registry.register(
            "openelb_vrrp_assignment_writes",
            "Writes of the ConfigMap openelb-vrrp (only when the assignment changed)",
            metrics.vrrp_assignment_writes.clone(),
        );
        registry.register(
            "openelb_vrrp_assignment_errors",
            "Failed writes of the ConfigMap openelb-vrrp",
            metrics.vrrp_assignment_errors.clone(),
        );
        registry.register_collector(Box::new(EipGauges(eips)));
        metrics
    }
}

impl Metrics {
    /// The counter of undecodable objects of `kind`.
    pub fn undecodable(&self, kind: &'static str) -> Counter {
        self.objects_undecodable.get_or_create_owned(&KindLabels { kind })
    }
}

/// Per-Eip gauges computed from the cache at scrape time.
struct EipGauges(Store<Eip>);

impl std::fmt::Debug for EipGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EipGauges").finish_non_exhaustive()
    }
}

impl Collector for EipGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut eips: Vec<(String, f64, f64)> = self
            .0
            .state()
            .iter()
            .map(|eip| {
                let status = eip.status.as_ref();
                // The exact size from the spec; the status field saturates for IPv6 pools.
                let size = AddrRange::parse(&eip.spec.address)
                    .map(|r| r.size() as f64)
                    .unwrap_or_else(|_| status.map_or(0.0, |s| s.pool_size as f64));
                let usage = status.map_or(0.0, |s| s.usage as f64);
                (eip.name_any(), size, usage)
            })
            .collect();
        eips.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, help, pick) in [
            ("openelb_eip_pool_size", "Addresses in the Eip's range.", 1),
            ("openelb_eip_usage", "Addresses of the Eip in use.", 2),
        ] {
            let gauge = ConstGauge::new(0.0f64);
            let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (eip, size, usage) in &eips {
                let value = if pick == 1 { *size } else { *usage };
                let labels = [("eip", eip.as_str())];
                ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A small fixed vocabulary for the `reason` label, from the failure message the core gives (which names
/// objects and addresses, so it cannot be a label itself). Unit tests pin it against the core's messages.
pub fn failure_kind(reason: &str) -> &'static str {
    let has = |s: &str| reason.contains(s);
    // "no Eip matches" lists why each Eip was skipped, so it is checked before the per-Eip reasons.
    if has("is not an IP address") || has("is not a protocol") {
        "invalid_request"
    } else if has("cannot share") {
        "share_conflict"
    } else if has("no Eip matches") {
        "no_eip"
    } else if has("which does not exist") {
        "eip_not_found"
    } else if has("ipFamilies") {
        "family_mismatch"
    } else if has("of protocol") {
        "protocol_mismatch"
    } else if has("is full") || has(", which is full") {
        "eip_full"
    } else if has("already in use") {
        "address_in_use"
    } else if has("is not inside") || has("no Eip contains") || has("is outside") {
        "address_outside_eips"
    } else if has("which is ") || has("gives out no addresses") {
        "eip_unusable"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use openelb_core::ipam::{Change, Ipam};
    use openelb_core::model::{
        ANNOTATION_EIP_IP, ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_PROTOCOL, IpFamily, Pool, Protocol, Service,
        ServicePort,
    };

    use super::*;

    fn pool(name: &str, address: &str) -> Pool {
        Pool { name: name.into(), address: address.into(), protocol: Protocol::Vip, ..Default::default() }
    }

    fn svc(name: &str, annotations: &[(&str, &str)]) -> Service {
        let mut all: Vec<(String, String)> = vec![(ANNOTATION_LB.into(), "openelb".into())];
        all.extend(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Service {
            namespace: "ns".into(),
            name: name.into(),
            type_: "LoadBalancer".into(),
            annotations: all.into_iter().collect(),
            ports: vec![ServicePort { port: 80, protocol: "TCP".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    /// The kind the core's own message for `service` falls into, after `setup` ran.
    fn kind_of(pools: &[Pool], setup: &[Service], service: &Service) -> &'static str {
        let mut ipam = Ipam::new(pools);
        for s in setup {
            ipam.reconcile(s, None);
        }
        match ipam.reconcile(service, None).change {
            Change::Failed { reason, .. } => failure_kind(&reason),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn core_failure_messages_fall_into_their_kinds() {
        let one = [pool("one", "192.0.2.1")];
        assert_eq!(kind_of(&one, &[], &svc("a", &[(ANNOTATION_EIP_IP, "nope")])), "invalid_request");
        assert_eq!(kind_of(&one, &[], &svc("a", &[(ANNOTATION_PROTOCOL, "ospf")])), "invalid_request");
        assert_eq!(kind_of(&one, &[], &svc("a", &[(ANNOTATION_EIP_POOL, "missing")])), "eip_not_found");
        assert_eq!(kind_of(&one, &[svc("first", &[])], &svc("a", &[])), "no_eip");
        assert_eq!(kind_of(&one, &[svc("first", &[])], &svc("a", &[(ANNOTATION_EIP_POOL, "one")])), "eip_full");
        assert_eq!(kind_of(&one, &[], &svc("a", &[(ANNOTATION_EIP_IP, "198.51.100.7")])), "address_outside_eips");
        assert_eq!(kind_of(&one, &[], &svc("a", &[(ANNOTATION_PROTOCOL, "bgp")])), "no_eip");
        assert_eq!(
            kind_of(&one, &[], &svc("a", &[(ANNOTATION_EIP_POOL, "one"), (ANNOTATION_PROTOCOL, "bgp")])),
            "protocol_mismatch"
        );
        let mut v6 = svc("a", &[(ANNOTATION_EIP_POOL, "one")]);
        v6.ip_families = vec![IpFamily::V6];
        assert_eq!(kind_of(&one, &[], &v6), "family_mismatch");
        let shared = [svc("first", &[(ANNOTATION_EIP_IP, "192.0.2.1")])];
        assert_eq!(kind_of(&one, &shared, &svc("a", &[(ANNOTATION_EIP_IP, "192.0.2.1")])), "share_conflict");
        let mut disabled = pool("off", "198.51.100.1-198.51.100.9");
        disabled.disable = true;
        assert_eq!(kind_of(&[disabled], &[], &svc("a", &[(ANNOTATION_EIP_POOL, "off")])), "eip_unusable");
        assert_eq!(failure_kind("something new"), "other");
    }

    fn eip(name: &str, address: &str, usage: i64) -> Eip {
        let mut e = Eip::new(name, openelb_k8s::crd::EipSpec { address: address.into(), ..Default::default() });
        e.status = Some(openelb_k8s::crd::EipStatus { usage, pool_size: i64::MAX, ..Default::default() });
        e
    }

    #[test]
    fn registers_every_metric_under_its_name() {
        let (store, mut writer) = kube::runtime::reflector::store::<Eip>();
        for e in [eip("v4", "192.0.2.0/24", 3), eip("v6", "2001:db8::/64", 1)] {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(e));
        }
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, store);
        metrics.allocations.inc();
        metrics.allocation_failures.get_or_create(&FailureLabels { reason: "no_eip" }).inc();
        metrics.reconcile_duration.get_or_create(&KindLabels { kind: "Service" }).observe(0.01);
        let conflict = ErrorLabels { kind: "Eip", error: ReconcileErrorKind::Conflict };
        metrics.reconcile_errors.get_or_create(&conflict).inc();
        metrics.leader.set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for needle in [
            "openelb_allocations_total 1",
            "openelb_allocation_failures_total{reason=\"no_eip\"} 1",
            "openelb_reconcile_duration_seconds_count{kind=\"Service\"} 1",
            "openelb_reconcile_errors_total{kind=\"Eip\",error=\"conflict\"} 1",
            "openelb_leader 1",
            "# TYPE openelb_eip_pool_size gauge",
            "openelb_eip_pool_size{eip=\"v4\"} 256.0",
            "openelb_eip_pool_size{eip=\"v6\"} 18446744073709553000.0",
            "# TYPE openelb_eip_usage gauge",
            "openelb_eip_usage{eip=\"v4\"} 3.0",
            "openelb_eip_usage{eip=\"v6\"} 1.0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
