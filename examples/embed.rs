//! Using openelb-core as a library: build a pool and a Service as plain values, allocate an address, and elect
//! the node that answers for it. No cluster, no network: `cargo run --example embed`.

use std::collections::BTreeMap;

use openelb::core::election;
use openelb::core::ipam::{Change, Ipam};
use openelb::core::{
    ANNOTATION_EIP_POOL, ANNOTATION_LB, ANNOTATION_LB_VALUE, Node, Pool, Protocol, Service, ServicePort,
};

fn main() {
    let pool = Pool {
        name: "vip-eip".into(),
        address: "192.0.2.91-192.0.2.100".into(),
        protocol: Protocol::Vip,
        interface: Some("eth0".into()),
        ..Default::default()
    };
    let svc = Service {
        namespace: "default".into(),
        name: "vip-svc".into(),
        type_: "LoadBalancer".into(),
        annotations: BTreeMap::from([
            (ANNOTATION_LB.to_string(), ANNOTATION_LB_VALUE.to_string()),
            (ANNOTATION_EIP_POOL.to_string(), "vip-eip".to_string()),
        ]),
        ports: vec![ServicePort { port: 80, protocol: "TCP".into(), ..Default::default() }],
        ..Default::default()
    };
    let nodes: Vec<Node> = ["master1", "worker-p001", "worker-p002"]
        .into_iter()
        .map(|n| Node { name: n.into(), ready: true, ..Default::default() })
        .collect();

    let mut ipam = Ipam::new(&[pool]);
    let outcome = ipam.reconcile(&svc, None);
    let Change::Assigned { pool, ip, .. } = outcome.change else {
        eprintln!("no address: {:?}", outcome.change);
        std::process::exit(1);
    };
    println!("{} gets {ip} from {pool}", svc.key());

    let candidates = election::candidates(&svc, &nodes, &[]);
    let order = election::rank(&ip, &candidates);
    println!("preference order for {ip}: {}", order.join(" > "));
    match election::holder(&ip, &candidates) {
        Some(h) => println!("{h} answers ARP for {ip}"),
        None => println!("no node may hold {ip}"),
    }
}
