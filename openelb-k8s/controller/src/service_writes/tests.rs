use std::sync::Arc;

use k8s_openapi::api::core::v1 as corev1;
use openelb_core::ipam::Change;
use openelb_core::model::FINALIZER_SERVICE;
use serde_json::json;

use super::concerns_us;
use crate::ledger::Ledger;
use openelb_k8s::crd::Eip;

const EIP: &str = include_str!("../../../../examples/vip-mode/vip-eip.yaml");
const SVC: &str = include_str!("../../../../examples/vip-mode/vip-svc.yaml");

/// A decision and the Eips as its tickets would write them.
#[derive(Debug)]
struct Decided {
    writes: super::ServiceWrites,
    eips: Vec<Eip>,
}

impl std::ops::Deref for Decided {
    type Target = super::ServiceWrites;
    fn deref(&self) -> &super::ServiceWrites {
        &self.writes
    }
}

/// Decides in a ledger that follows `eips`, as a fresh term would.
fn decide(
    svc: &corev1::Service,
    eips: &[Arc<Eip>],
    namespaces: &[Arc<corev1::Namespace>],
) -> Result<Decided, openelb_k8s::convert::ConvertError> {
    let mut ledger = Ledger::default();
    ledger.refresh(eips)?;
    let ns = namespaces.iter().find(|n| n.metadata.name == svc.metadata.namespace).map(|n| &**n);
    let writes = super::decide(svc, &mut ledger, ns)?.expect("a fresh ledger has written no Service");
    let now = crate::eip_status::now();
    let eips = writes.tickets.iter().filter_map(|t| ledger.due(&t.eip, &now).map(|(e, _)| e)).collect();
    Ok(Decided { writes, eips })
}

fn seed() -> (corev1::Service, Arc<Eip>) {
    let mut svc: corev1::Service = serde_yaml::from_str(SVC).unwrap();
    svc.metadata.namespace = Some("default".into());
    svc.metadata.resource_version = Some("7".into());
    let mut eip: Eip = serde_yaml::from_str(EIP).unwrap();
    eip.metadata.resource_version = Some("3".into());
    (svc, Arc::new(eip))
}

#[test]
fn new_service_claims_the_first_address_in_the_eip_then_the_service() {
    let (svc, eip) = seed();
    let p = decide(&svc, &[eip], &[]).unwrap();
    assert!(matches!(p.outcome.change, Change::Assigned { ref pool, .. } if pool == "vip-eip"), "{:?}", p.outcome);
    assert_eq!(p.eips.len(), 1);
    let status = p.eips[0].status.clone().unwrap();
    assert_eq!(status.usage, 1);
    assert_eq!(status.pool_size, 10);
    assert_eq!(status.used.get("192.168.0.91").map(String::as_str), Some("default/vip-svc"));
    assert_eq!(p.eips[0].metadata.resource_version.as_deref(), Some("3"), "the write must be guarded");
    assert_eq!(p.service_status, Some(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.0.91"}]}}})));
    assert_eq!(
        p.service_meta,
        Some(json!({"metadata": {
            "resourceVersion": "7",
            "labels": {"eip.openelb.kubesphere.io/v1alpha2": "vip-eip"},
            "finalizers": [FINALIZER_SERVICE],
        }}))
    );
}

/// Applying the writes and deciding again must ask for nothing: otherwise every watch event would write.
#[test]
fn applied_writes_are_a_fixed_point() {
    let (mut svc, eip) = seed();
    let p = decide(&svc, &[eip], &[]).unwrap();
    let eip = Arc::new(p.eips[0].clone());
    let patch = p.outcome.patch.clone().unwrap();
    openelb_k8s::convert::apply_service_patch(&mut svc, &patch);
    let again = decide(&svc, &[eip], &[]).unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert!(matches!(again.outcome.change, Change::Kept { .. }));
}

#[test]
fn deleting_service_frees_its_address_and_drops_the_finalizer() {
    let (mut svc, eip) = seed();
    let p = decide(&svc, &[eip], &[]).unwrap();
    let eip = Arc::new(p.eips[0].clone());
    openelb_k8s::convert::apply_service_patch(&mut svc, &p.outcome.patch.clone().unwrap());
    svc.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));

    let p = decide(&svc, &[eip], &[]).unwrap();
    assert!(matches!(p.outcome.change, Change::Released { .. }), "{:?}", p.outcome);
    let status = p.eips[0].status.clone().unwrap();
    assert_eq!(status.usage, 0);
    assert!(status.used.is_empty());
    assert_eq!(p.service_status, Some(json!({"status": {"loadBalancer": {"ingress": null}}})));
    assert_eq!(
        p.service_meta,
        Some(json!({"metadata": {
            "resourceVersion": "7",
            "labels": {"eip.openelb.kubesphere.io/v1alpha2": null},
            "finalizers": null,
        }}))
    );
}

#[test]
fn service_of_another_load_balancer_is_left_alone() {
    let (mut svc, eip) = seed();
    svc.metadata.annotations = None;
    assert!(!concerns_us(&svc));
    let p = decide(&svc, &[eip], &[]).unwrap();
    assert_eq!(p.outcome.change, Change::NotOurs);
    assert!(p.service_status.is_none() && p.service_meta.is_none());
}

#[test]
fn seed_service_concerns_us() {
    assert!(concerns_us(&seed().0));
}

/// The Service path writes the Eip's conditions along with `used`, so the Eip reconcile has nothing to add.
#[test]
fn an_eip_written_for_a_service_carries_up_to_date_conditions() {
    let (svc, eip) = seed();
    let p = decide(&svc, &[eip], &[]).unwrap();
    let status = p.eips[0].status.clone().unwrap();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.message.as_str()), ("True", "9 of 10 addresses free"));
    assert!(status.conditions.iter().any(|c| c.type_ == "Invalid" && c.status == "False"));
}

/// A Service keeps its address while its Eip drains, and gives it back when it goes itself.
#[test]
fn a_holder_keeps_its_address_in_a_deleting_eip() {
    let (mut svc, eip) = seed();
    let p = decide(&svc, &[eip], &[]).unwrap();
    openelb_k8s::convert::apply_service_patch(&mut svc, &p.outcome.patch.clone().unwrap());
    let mut deleting = p.eips[0].clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
    let deleting = Arc::new(deleting);

    let kept = decide(&svc, std::slice::from_ref(&deleting), &[]).unwrap();
    assert!(matches!(kept.outcome.change, Change::Kept { .. }), "{:?}", kept.outcome);
    assert!(kept.service_status.is_none() && kept.service_meta.is_none());
    let ready = kept.eips.first().and_then(|e| e.status.as_ref()).map(|s| s.conditions.clone());
    assert!(ready.is_none(), "keeping writes nothing: {ready:?}");

    let mut newcomer = svc.clone();
    newcomer.metadata.name = Some("newcomer".into());
    newcomer.metadata.finalizers = None;
    newcomer.metadata.labels = None;
    newcomer.status = None;
    let refused = decide(&newcomer, std::slice::from_ref(&deleting), &[]).unwrap();
    let Change::Failed { reason, .. } = &refused.outcome.change else { panic!("{:?}", refused.outcome) };
    assert!(reason.contains("vip-eip") && reason.contains("being deleted"), "{reason}");
    assert!(refused.eips.is_empty(), "a refusal writes no Eip: {:?}", refused.eips);

    svc.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
    let released = decide(&svc, &[deleting], &[]).unwrap();
    assert!(matches!(released.outcome.change, Change::Released { .. }), "{:?}", released.outcome);
    assert!(released.eips[0].status.as_ref().unwrap().used.is_empty());
}

fn announced(eip: &Eip) -> Option<(String, String)> {
    let c = eip.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Announced")?;
    Some((c.status.clone(), c.reason.clone()))
}

fn not_announced_events(p: &Decided) -> Vec<&openelb_core::ipam::Event> {
    p.outcome
        .events
        .iter()
        .filter(|e| e.reason == openelb_core::event_reason::EventReason::AddressNotAnnounced)
        .collect()
}

/// The seed's VIP pool is announced: the Eip says so, and the Service is told nothing more.
#[test]
fn an_address_from_a_vip_pool_gets_no_not_announced_event() {
    let (svc, eip) = seed();
    let p = decide(&svc, &[eip], &[]).unwrap();
    assert!(not_announced_events(&p).is_empty(), "{:?}", p.outcome.events);
    assert_eq!(announced(&p.eips[0]), Some(("True".into(), "ProtocolImplemented".into())));
}

/// A layer2 (or bgp) pool allocates but nothing announces it: the Eip's `Announced` is False, and the Service
/// gets one Warning Event when it is given the address, none while it keeps it.
#[test]
fn an_address_from_a_pool_nobody_announces_gets_one_warning_event() {
    for protocol in [Some(openelb_k8s::crd::EipProtocol::Layer2), Some(openelb_k8s::crd::EipProtocol::Bgp), None] {
        let (mut svc, eip) = seed();
        if let Some(a) = svc.metadata.annotations.as_mut() {
            a.remove(openelb_core::model::ANNOTATION_PROTOCOL);
        }
        let mut eip = Eip::clone(&eip);
        eip.spec.protocol = protocol;
        let p = decide(&svc, &[Arc::new(eip)], &[]).unwrap();
        assert!(matches!(p.outcome.change, Change::Assigned { .. }), "{:?}", p.outcome);
        let events = not_announced_events(&p);
        let [event] = events.as_slice() else { panic!("{protocol:?}: {:?}", p.outcome.events) };
        assert_eq!(event.type_, openelb_core::ipam::EventType::Warning);
        let wire = protocol.map_or("bgp", |p| p.as_str());
        assert!(
            event.message.starts_with(&format!("192.168.0.91 from Eip vip-eip is not announced: protocol {wire} ")),
            "{}",
            event.message
        );
        assert_eq!(announced(&p.eips[0]), Some(("False".into(), "ProtocolNotImplemented".into())));
        let ready = p.eips[0].status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        assert_eq!(ready.map(|c| c.status.as_str()), Some("True"), "still allocates");

        // Written and decided again (a resync, a restart): nothing to write, no second Event.
        let eip = Arc::new(p.eips[0].clone());
        openelb_k8s::convert::apply_service_patch(&mut svc, &p.outcome.patch.clone().unwrap());
        let again = decide(&svc, &[eip], &[]).unwrap();
        assert!(again.is_empty(), "{again:?}");
        assert!(again.outcome.events.is_empty(), "{:?}", again.outcome.events);
    }
}
