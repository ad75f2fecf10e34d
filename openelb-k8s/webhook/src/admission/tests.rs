use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

/// A VIP-mode Eip with its interface: nothing to warn about.
fn eip(name: &str, address: &str) -> Value {
    json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": {"name": name},
           "spec": {"address": address, "protocol": "vip", "interface": "eth0"}})
}

fn typed(v: &Value) -> Eip {
    serde_json::from_value(v.clone()).unwrap()
}

fn body(operation: &str, version: &str, object: Option<Value>, old: Option<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "network.kubesphere.io", "version": version, "kind": "Eip"},
            "resource": {"group": "network.kubesphere.io", "version": version, "resource": "eips"},
            "name": "a", "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object, "oldObject": old, "dryRun": false
        }
    }))
    .unwrap()
}

fn answer(body: &[u8], existing: &[Value]) -> AdmissionResponse {
    let request = decode(body).unwrap();
    let existing: Vec<Eip> = existing.iter().map(typed).collect();
    review(&request, &existing, &[])
}

fn message(r: &AdmissionResponse) -> &str {
    r.status.as_ref().map(|s| s.message.as_str()).unwrap_or("")
}

#[test]
fn a_bad_address_is_denied_naming_object_field_and_value() {
    let r = answer(&body("CREATE", "v1alpha2", Some(eip("a", "192.0.2.300")), None), &[]);
    assert!(!r.allowed);
    assert_eq!(r.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    let m = message(&r);
    assert!(m.starts_with("Eip/a: spec.address=\"192.0.2.300\": "), "{m}");
    assert_eq!(r.status.as_ref().unwrap().code, 403);
}

/// Until a speaker implements them, a layer2 or bgp Eip (bgp also when `spec.protocol` is omitted) is
/// allowed with a warning naming the field and its value: its addresses are allocated but announced by nobody.
#[test]
fn a_pool_of_a_protocol_nobody_announces_is_allowed_with_a_warning() {
    for (protocol, value) in [(Some("layer2"), "layer2"), (Some("bgp"), "bgp"), (None, "bgp")] {
        let mut object = eip("a", "192.0.2.16-192.0.2.31");
        match protocol {
            Some(p) => object["spec"]["protocol"] = json!(p),
            None => {
                object["spec"].as_object_mut().map(|spec| spec.remove("protocol"));
            }
        }
        let r = answer(&body("CREATE", "v1alpha2", Some(object.clone()), None), &[]);
        assert!(r.allowed, "{r:?}");
        let [warning] = r.warnings.as_slice() else { panic!("{protocol:?}: {r:?}") };
        let why = openelb_core::protocol_support::not_announced(openelb_core::model::Protocol::from_spec(protocol));
        assert_eq!(*warning, format!("Eip/a: spec.protocol={value:?}: {}", why.unwrap_or_default()));
        assert!(warning.contains("an omitted spec.protocol means bgp"), "{warning}");
        // An update keeps saying it: the addresses are still not announced.
        let r = answer(&body("UPDATE", "v1alpha2", Some(object.clone()), Some(object)), &[]);
        assert!(r.allowed && r.warnings.len() == 1, "{r:?}");
    }
}

#[test]
fn an_overlap_with_another_eip_is_denied_and_names_it() {
    let existing = [eip("b", "192.0.2.0/28")];
    let r = answer(&body("CREATE", "v1alpha2", Some(eip("a", "192.0.2.10-192.0.2.20")), None), &existing);
    assert!(!r.allowed);
    let m = message(&r);
    assert!(m.contains("Eip/a: spec.address=\"192.0.2.10-192.0.2.20\""), "{m}");
    assert!(m.contains("overlaps Eip/b"), "{m}");
    assert!(m.contains("192.0.2.10-192.0.2.15"), "{m}");
}

#[test]
fn a_good_eip_is_allowed_and_a_vip_pool_without_interface_gets_a_warning() {
    let existing = [eip("b", "192.0.2.0/28")];
    let r = answer(&body("CREATE", "v1alpha2", Some(eip("a", "192.0.2.16-192.0.2.31")), None), &existing);
    assert!(r.allowed, "{r:?}");
    assert!(r.status.is_none() && r.warnings.is_empty(), "{r:?}");

    let vip = json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": {"name": "a"},
                     "spec": {"address": "192.0.2.16-192.0.2.31", "protocol": "vip"}});
    let r = answer(&body("CREATE", "v1alpha2", Some(vip), None), &existing);
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.warnings.len(), 1, "{r:?}");
    assert!(r.warnings[0].starts_with("Eip/a: spec.interface=\"\": "), "{:?}", r.warnings);
}

#[test]
fn the_eip_under_review_is_not_compared_with_its_own_stored_version() {
    let stored = eip("a", "192.0.2.0/28");
    let new = json!({"apiVersion": "network.kubesphere.io/v1alpha2", "kind": "Eip", "metadata": {"name": "a"},
                     "spec": {"address": "192.0.2.0/27", "protocol": "vip", "interface": "eth0"}});
    let r = answer(&body("UPDATE", "v1alpha2", Some(new), Some(stored.clone())), &[stored]);
    assert!(r.allowed, "{r:?}");
}

#[test]
fn a_second_default_pool_is_denied() {
    let mut b = eip("b", "192.0.2.0/28");
    b["metadata"]["annotations"] = json!({"eip.openelb.kubesphere.io/is-default-eip": "true"});
    let mut a = eip("a", "198.51.100.0/28");
    a["metadata"]["annotations"] = json!({"eip.openelb.kubesphere.io/is-default-eip": "true"});
    let r = answer(&body("CREATE", "v1alpha2", Some(a), None), &[b]);
    assert!(!r.allowed);
    assert!(message(&r).contains("metadata.annotations[eip.openelb.kubesphere.io/is-default-eip]"), "{r:?}");
}

#[test]
fn an_update_keeps_problems_the_object_already_had_as_warnings_but_refuses_new_ones() {
    // `a` overlapped `b` before the webhook existed.
    let existing = [eip("b", "192.0.2.0/28")];
    let old = eip("a", "192.0.2.8/29");
    let mut finalized = old.clone();
    finalized["metadata"]["finalizers"] = json!(["finalizer.ipam.kubesphere.io/v1alpha1"]);
    let r = answer(&body("UPDATE", "v1alpha2", Some(finalized), Some(old.clone())), &existing);
    assert!(r.allowed, "a finalizer change was refused: {r:?}");
    assert!(r.warnings.iter().any(|w| w.contains("overlaps Eip/b") && w.ends_with("so not refused)")), "{r:?}");

    let moved = eip("a", "192.0.2.4/30");
    let r = answer(&body("UPDATE", "v1alpha2", Some(moved), Some(old)), &existing);
    assert!(!r.allowed, "a new overlap was allowed: {r:?}");
    assert!(message(&r).contains("spec.address=\"192.0.2.4/30\""), "{r:?}");
}

#[test]
fn an_update_that_strands_addresses_in_use_is_denied_once() {
    let mut old = eip("a", "192.0.2.0/28");
    old["status"] = json!({"used": {"192.0.2.14": "default/web"}});
    let mut new = eip("a", "192.0.2.0/29");
    new["status"] = old["status"].clone();
    let r = answer(&body("UPDATE", "v1alpha2", Some(new), Some(old)), &[]);
    assert!(!r.allowed);
    let m = message(&r);
    assert!(m.contains("192.0.2.14 (default/web)"), "{m}");
    assert_eq!(m.matches("192.0.2.14").count(), 1, "reported twice: {m}");
}

#[test]
fn a_v1alpha1_eip_is_read_like_the_api_server_converts_it() {
    let mut a = eip("a", "192.0.2.300");
    a["apiVersion"] = json!("network.kubesphere.io/v1alpha1");
    // v1alpha1 has no vip.
    a["spec"]["protocol"] = json!("layer2");
    let r = answer(&body("CREATE", "v1alpha1", Some(a), None), &[]);
    assert!(!r.allowed);
    assert!(message(&r).contains("spec.address=\"192.0.2.300\""), "{r:?}");
    let r = answer(&body("CREATE", "v1beta9", Some(eip("a", "192.0.2.1")), None), &[]);
    assert!(!r.allowed && message(&r).contains("v1beta9"), "{r:?}");
}

#[test]
fn an_object_that_is_no_eip_is_denied_naming_field_and_value() {
    let mut a = eip("a", "192.0.2.1");
    a["spec"]["priority"] = json!("high");
    let r = answer(&body("CREATE", "v1alpha2", Some(a.clone()), None), &[]);
    assert!(!r.allowed);
    assert_eq!(r.status.as_ref().map(|s| s.code), Some(403), "answered, not failed: {r:?}");
    assert_eq!(
        message(&r),
        "Eip/a: spec.priority=\"high\": does not decode as a network.kubesphere.io/v1alpha2 Eip: invalid type: \
         string \"high\", expected i64"
    );
    a["spec"]["priority"] = json!(1e30);
    let r = answer(&body("CREATE", "v1alpha2", Some(a), None), &[]);
    assert!(!r.allowed && message(&r).starts_with("Eip/a: spec.priority=\"1e+30\": does not decode"), "{r:?}");
    let r = answer(&body("CREATE", "v1alpha2", None, None), &[]);
    assert!(!r.allowed && message(&r).contains("carries no object"), "{r:?}");
}

/// Upstream declares `priority` as Go `int`: a value past the schema's int32 bounds decodes, and validation
/// refuses it by field and value (not as a decode error).
#[test]
fn a_priority_out_of_range_is_refused_by_field_and_value() {
    let mut a = eip("a", "192.0.2.1");
    a["spec"]["priority"] = json!(3_000_000_000u64);
    let r = answer(&body("CREATE", "v1alpha2", Some(a), None), &[]);
    assert!(!r.allowed);
    let m = message(&r);
    assert!(m.starts_with("Eip/a: spec.priority=\"3000000000\": out of range"), "{m}");
    assert!(!m.contains("decode"), "{m}");
}

/// An Eip stored with a field that does not decode can still be updated (the controller's finalizer, a fix
/// elsewhere); a new unreadable field is refused, and a fix of the field is checked as usual.
#[test]
fn an_undecodable_field_ratchets_like_any_other_problem() {
    let mut stored = eip("a", "192.0.2.1");
    stored["spec"]["priority"] = json!("high");
    let mut finalizer = stored.clone();
    finalizer["metadata"]["finalizers"] = json!(["finalizer.ipam.kubesphere.io/v1alpha1"]);
    let r = answer(&body("UPDATE", "v1alpha2", Some(finalizer), Some(stored.clone())), &[]);
    assert!(r.allowed, "{r:?}");
    assert!(r.warnings[0].contains("spec.priority=\"high\"") && r.warnings[0].contains("already so"), "{r:?}");

    let mut worse = stored.clone();
    worse["spec"]["priority"] = json!("higher");
    let r = answer(&body("UPDATE", "v1alpha2", Some(worse), Some(stored.clone())), &[]);
    assert!(!r.allowed && message(&r).contains("\"higher\""), "{r:?}");

    let r = answer(&body("UPDATE", "v1alpha2", Some(eip("a", "192.0.2.300")), Some(stored.clone())), &[]);
    assert!(!r.allowed && message(&r).contains("192.0.2.300"), "the fixed object is judged on its own: {r:?}");
    let r = answer(&body("UPDATE", "v1alpha2", Some(eip("a", "192.0.2.1")), Some(stored)), &[]);
    assert!(r.allowed, "{r:?}");
    assert!(r.warnings.iter().any(|w| w.contains("stored object does not decode")), "{r:?}");
}

#[test]
fn a_missing_name_is_taken_from_the_request() {
    let mut a = eip("", "192.0.2.1");
    a["metadata"] = json!({});
    let r = answer(&body("CREATE", "v1alpha2", Some(a), None), &[]);
    assert!(r.allowed, "{r:?}");
}

#[test]
fn delete_is_allowed_and_other_kinds_are_denied() {
    let r = answer(&body("DELETE", "v1alpha2", None, Some(eip("a", "192.0.2.300"))), &[]);
    assert!(r.allowed);
    let mut v: Value = serde_json::from_slice(&body("CREATE", "v1", Some(json!({})), None)).unwrap();
    v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    let r = answer(&serde_json::to_vec(&v).unwrap(), &[]);
    assert!(!r.allowed && message(&r).contains("/v1 Pod"), "{r:?}");
}

#[test]
fn unreadable_eips_become_warnings() {
    let request = decode(&body("CREATE", "v1alpha2", Some(eip("a", "192.0.2.1")), None)).unwrap();
    let r = review(&request, &[], &["Eip/x (spec.address: invalid type)".to_string()]);
    assert!(r.allowed);
    assert_eq!(r.warnings, vec!["not checked against Eip/x (spec.address: invalid type)".to_string()]);
}

#[test]
fn the_answer_is_an_admission_review_with_the_request_uid() {
    let r = answer(&body("CREATE", "v1alpha2", Some(eip("a", "192.0.2.300")), None), &[]);
    let v = r.into_review();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 403);
    assert!(v["response"].get("warnings").is_none());
}

#[test]
fn malformed_reviews_are_decode_errors_that_say_what_is_wrong() {
    assert!(matches!(decode(b"not json"), Err(DecodeError::Json(_))));
    let e = decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"} {}"#).unwrap_err();
    assert!(e.to_string().contains("after the review"), "{e}");
    let e = decode(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#).unwrap_err();
    assert!(e.to_string().contains("admission.k8s.io/v1beta1"), "{e}");
    let e = decode(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err();
    assert_eq!(e, DecodeError::NoRequest);
    let e = decode(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",
        "kind":{"group":"","version":"v1","kind":"Pod"},"operation":"PATCH"}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("request.operation"), "{e}");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9./:-]{0,12}".prop_map(Value::String),
        Just(json!("192.0.2.300")),
        Just(json!("2001:db8::/64")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_string()),
                    Just("name".to_string()),
                    Just("spec".to_string()),
                    Just("address".to_string()),
                    Just("status".to_string()),
                    Just("used".to_string()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = decode(&bytes) {
            let _ = review(&request, &[], &[]);
        }
    }

    #[test]
    fn arbitrary_objects_in_a_well_formed_review_never_panic(
        object in json_value(),
        old in json_value(),
        op in prop_oneof![Just("CREATE"), Just("UPDATE"), Just("DELETE"), Just("CONNECT")],
        version in prop_oneof![Just("v1alpha1"), Just("v1alpha2"), Just("v2")],
        address in "[0-9a-f.:/-]{0,20}",
    ) {
        let existing = [typed(&eip("b", "192.0.2.0/28")), typed(&eip("c", &address))];
        let request = decode(&body(op, version, Some(object), Some(old))).unwrap();
        let r = review(&request, &existing, &[]);
        prop_assert!(r.allowed || r.status.as_ref().is_some_and(|s| !s.message.is_empty()));
    }

    #[test]
    fn any_address_gets_an_answer_and_a_denial_names_it(address in "[0-9a-f.:/-]{0,24}") {
        let r = answer(&body("CREATE", "v1alpha2", Some(eip("a", &address)), None), &[]);
        if !r.allowed {
            prop_assert!(message(&r).contains(&format!("{address:?}")), "{:?}", r);
        }
    }
}
