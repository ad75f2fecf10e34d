//! `lab demo`: the seed's Step 4 as the client sees it, then a crash of the holder and what the client saw of
//! it, then everything removed.

use std::time::Duration;

use anyhow::{Result, anyhow};

use super::probe::{PingProbe, largest_gap, now_epoch};
use super::speaker::Speaker;
use super::topology::Lab;

/// How long a speaker may take to elect the first holder (keepalived at 1 s waits ~3.6 s in BACKUP first).
pub const HOLDER_TIMEOUT: Duration = Duration::from_secs(20);

/// Label for a node and its MAC, as the client's `ip neigh` would show it.
fn who(lab: &Lab, node: &str) -> String {
    lab.plan.node(node).map_or_else(|| node.to_string(), |n| format!("{node} ({}, {})", n.ip, n.mac_string()))
}

/// Prints the client's neighbour entry for the VIP and names the node it points to.
pub fn show_neigh(lab: &Lab) -> Result<()> {
    println!("client$ ip neigh show {}", lab.plan.vip);
    match lab.client_neigh()? {
        Some(n) => {
            let owner = n.mac.as_deref().and_then(|m| lab.plan.node_by_mac(m)).map(|n| n.name.clone());
            println!("{}    <- {}", n.line, owner.unwrap_or_else(|| "no lab node".into()));
        }
        None => println!("(no entry)"),
    }
    Ok(())
}

fn show_curls(lab: &Lab, count: usize) {
    for _ in 0..count {
        println!("client$ curl http://{}/", lab.plan.vip);
        match lab.curl() {
            Ok(body) => print!("{body}"),
            Err(e) => println!("{e:#}"),
        }
    }
}

/// Runs the demo on a lab built by the caller (so the caller's guard removes it on every path).
pub fn run(lab: &mut Lab, speaker: &Speaker) -> Result<()> {
    let plan = lab.plan.clone();
    println!(
        "lab {}: {} behind VIP {} (externalTrafficPolicy {:?}); candidates in preference order: {}",
        plan.id,
        plan.service,
        plan.vip,
        plan.policy,
        plan.candidates.join(", ")
    );
    for node in &plan.nodes {
        let pods: Vec<&str> = plan.pods.iter().filter(|p| p.node == node.name).map(|p| p.name.as_str()).collect();
        println!("  {:<12} {} {}  pods: {}", node.name, node.ip, node.mac_string(), pods.join(", "));
    }
    println!("starting {} on {}", speaker.label(), speaker.nodes(&plan).join(", "));
    lab.start_speakers(speaker)?;
    let holder = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    println!("{} holds {}\n", who(lab, &holder), plan.vip);

    println!("== Step 4, from the client {}", super::plan::CLIENT_IP);
    println!("client$ ping -c 4 {}", plan.vip);
    print!("{}", lab.client(&["ping", "-c", "4", "-n", &plan.vip.to_string()])?);
    show_neigh(lab)?;
    show_curls(lab, 4);

    println!("\n== crash of {}: speaker frozen then killed, eth0 down", holder);
    let probe = PingProbe::start(&plan.client_ns, plan.vip)?;
    if !probe.wait_replies_after(now_epoch(), 20, Duration::from_secs(5)) {
        return Err(anyhow!("the client's probe gets no replies from {} before the crash", plan.vip));
    }
    let t = now_epoch();
    lab.crash(&holder)?;
    let next = lab.wait_holder(Some(&holder), HOLDER_TIMEOUT)?;
    let recovered = probe.wait_replies_after(t, 30, Duration::from_secs(10));
    let replies = probe.stop();
    println!("{} took over {}", who(lab, &next), plan.vip);
    show_neigh(lab)?;
    match largest_gap(&replies, t) {
        Some(gap) if recovered => {
            println!("outage seen by the client (largest gap between 10 ms pings): {:.3} s", gap)
        }
        _ => println!("the client did not get replies back within 10 s"),
    }
    lab.resync_kube_proxy()?;
    println!("(endpoints controller: Pods on {holder} removed from the Service)");
    show_curls(lab, 2);
    Ok(())
}
