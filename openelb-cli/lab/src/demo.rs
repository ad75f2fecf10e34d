//! `lab demo`: the seed's Step 4 as the client sees it, then a crash of the holder and what the client saw of
//! it, then everything removed.

use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::probe::{PingProbe, largest_gap, now_epoch};
use crate::speaker_program::SpeakerProgram;
use crate::topology::Lab;

/// How long a speaker may take to elect the first holder (keepalived at 1 s waits ~3.6 s in BACKUP first).
pub const HOLDER_TIMEOUT: Duration = Duration::from_secs(20);

/// Label for a node and its MAC, as the client's `ip neigh` would show it.
fn who(lab: &Lab, node: &str) -> String {
    lab.layout.node(node).map_or_else(|| node.to_string(), |n| format!("{node} ({}, {})", n.ip, n.mac_string()))
}

/// Prints the client's neighbour entry for the VIP and names the node it points to.
pub fn show_neigh(lab: &Lab) -> Result<()> {
    println!("client$ ip neigh show {}", lab.layout.vip);
    match lab.client_neigh()? {
        Some(n) => {
            let owner = n.mac.as_deref().and_then(|m| lab.layout.node_by_mac(m)).map(|n| n.name.clone());
            println!("{}    <- {}", n.line, owner.unwrap_or_else(|| "no lab node".into()));
        }
        None => println!("(no entry)"),
    }
    Ok(())
}

fn show_curls(lab: &Lab, count: usize) {
    for _ in 0..count {
        println!("client$ curl http://{}/", lab.layout.vip);
        match lab.curl() {
            Ok(body) => print!("{body}"),
            Err(e) => println!("{e:#}"),
        }
    }
}

/// Runs the demo on a lab built by the caller (so the caller's guard removes it on every path).
pub fn run(lab: &mut Lab, speaker: &SpeakerProgram) -> Result<()> {
    let layout = lab.layout.clone();
    println!(
        "lab {}: {} behind VIP {} (externalTrafficPolicy {:?}); candidates in preference order: {}",
        layout.id,
        layout.service,
        layout.vip,
        layout.policy,
        layout.candidates.join(", ")
    );
    for node in &layout.nodes {
        let pods: Vec<&str> = layout.pods.iter().filter(|p| p.node == node.name).map(|p| p.name.as_str()).collect();
        println!("  {:<12} {} {}  pods: {}", node.name, node.ip, node.mac_string(), pods.join(", "));
    }
    println!("starting {} on {}", speaker.label(), speaker.nodes(&layout).join(", "));
    lab.start_speakers(speaker)?;
    let holder = lab.wait_holder(None, HOLDER_TIMEOUT)?;
    println!("{} holds {}\n", who(lab, &holder), layout.vip);

    println!("== Step 4, from the client {}", crate::layout::CLIENT_IP);
    println!("client$ ping -c 4 {}", layout.vip);
    print!("{}", lab.client(&["ping", "-c", "4", "-n", &layout.vip.to_string()])?);
    show_neigh(lab)?;
    show_curls(lab, 4);

    println!("\n== crash of {}: eth0 down, speaker frozen then killed", holder);
    let probe = PingProbe::start(&layout.client_ns, layout.vip)?;
    if !probe.wait_replies_after(now_epoch(), 20, Duration::from_secs(5)) {
        return Err(anyhow!("the client's probe gets no replies from {} before the crash", layout.vip));
    }
    let t = now_epoch();
    lab.crash(&holder)?;
    let next = lab.wait_holder(Some(&holder), HOLDER_TIMEOUT)?;
    let recovered = probe.wait_replies_after(t, 30, Duration::from_secs(10));
    let replies = probe.stop();
    println!("{} took over {}", who(lab, &next), layout.vip);
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
