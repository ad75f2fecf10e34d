//! The subcommands: each loads the manifests, runs the core over them and prints the result.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use openelb_core::validate;
use openelb_k8s::offline;

use openelb_sim::report::{ChangeView, Step};
use openelb_sim::{Loaded, Report, Scenario, Timing, World};

use crate::output::{self, DisplayFields, table};
use crate::sim_flags::SimFlags;
use crate::{Format, Inputs};

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

pub fn allocate(inputs: &Inputs, format: Format) -> Result<ExitCode> {
    let loaded = Loaded::load(&inputs.paths)?;
    warn_all(&loaded.warnings);
    let (manifests, mut world) = loaded.into_world();
    warn_all(&world.warnings());
    match format {
        Format::Table => {
            // The table needs nothing more of the objects as written: what they hold is freed before allocating.
            drop(manifests);
            // Cluster IPs and node ports are filled in over the Services as loaded, deleted ones included.
            let display = output::display_fields(&world.cluster.services);
            let changes = world.reconcile();
            print!("{}", services_table(&world, &display));
            println!();
            print!("{}", eips_table(&world));
            if !changes.is_empty() {
                println!();
                print!("{}", changes_text(&changes));
            }
        }
        Format::Yaml | Format::Json => {
            world.reconcile();
            let objects = offline::updated_objects(&manifests, &world.cluster, &world.ipam)?;
            print_objects(&objects, format)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_objects(objects: &[serde_json::Value], format: Format) -> Result<()> {
    if format == Format::Json {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for o in objects {
            println!("---");
            print!("{}", serde_yaml::to_string(o)?);
        }
    }
    Ok(())
}

/// `kubectl get svc -A` after allocation. Cluster IPs and node ports the API server would have assigned are
/// filled in by [`output::display_ports`] when the manifests leave them out.
fn services_table(world: &World, display: &DisplayFields) -> String {
    let mut rows = Vec::new();
    let mut services: Vec<_> = world.cluster.services.iter().collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for s in services {
        let external = if !s.ingress.is_empty() {
            s.ingress.join(",")
        } else if s.type_ == "LoadBalancer" {
            "<pending>".to_string()
        } else {
            "<none>".to_string()
        };
        let (cluster_ip, ports) = output::display_ports(display, s);
        rows.push(vec![s.namespace.clone(), s.name.clone(), s.type_.clone(), cluster_ip, external, ports]);
    }
    table(&["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"], &rows)
}

/// `kubectl get eip` after allocation (printer columns cidr, usage, total), plus the protocol.
fn eips_table(world: &World) -> String {
    let mut rows = Vec::new();
    let mut pools: Vec<_> = world.cluster.pools.iter().collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    for p in pools {
        let (usage, total) = match world.ipam.pool_status(&p.name) {
            Some(st) => (st.usage.to_string(), st.pool_size.to_string()),
            None => ("-".into(), "-".into()),
        };
        let mut flags = Vec::new();
        if p.disable {
            flags.push("disabled");
        }
        if p.is_default {
            flags.push("default");
        }
        rows.push(vec![p.name.clone(), p.address.clone(), usage, total, p.protocol.to_string(), flags.join(",")]);
    }
    table(&["NAME", "CIDR", "USAGE", "TOTAL", "PROTOCOL", "FLAGS"], &rows)
}

fn changes_text(changes: &[ChangeView]) -> String {
    let mut s = String::from("Events:\n");
    for c in changes {
        let kind = if c.warning { "Warning" } else { "Normal" };
        s.push_str(&format!("  {kind:<8} {}: {}\n", c.service, c.change));
    }
    s
}

pub fn simulate(inputs: &Inputs, scenario: Option<&Path>, format: Format, timing: &SimFlags) -> Result<ExitCode> {
    let loaded = Loaded::load(&inputs.paths)?;
    warn_all(&loaded.warnings);
    let scenario = scenario.map(Scenario::load).transpose()?;
    let (_, mut world) = loaded.into_world();
    warn_all(&world.warnings());
    let report = openelb_sim::run(&mut world, scenario.as_ref(), &Timing::from(timing))?;
    match format {
        Format::Table => print!("{}", report_text(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(&report)?),
    }
    for c in &report.conflicts {
        eprintln!("warning: {} {}", c.at, c.text.trim_start_matches("WARNING: "));
    }
    Ok(ExitCode::SUCCESS)
}

fn report_text(report: &Report) -> String {
    let mut s = String::new();
    if let Some(name) = &report.scenario {
        s.push_str(&format!("scenario {name}\n"));
    }
    let st = &report.settings;
    s.push_str(&format!(
        "speakers: advert {} ms, preempt delay {} ms, GARP {} x {} ms; segment delay {} ms, loss {}; node grace {} s\n",
        st.advert_interval_ms,
        st.preempt_delay_ms,
        st.garp_count,
        st.garp_spacing_ms,
        st.delay_ms,
        st.loss,
        st.node_grace_ms / 1000.0
    ));
    let mut prev: Option<&Step> = None;
    for (i, step) in report.steps.iter().enumerate() {
        let last = i + 1 == report.steps.len();
        s.push_str(&step_text(step, prev, last));
        prev = Some(step);
    }
    if !report.conflicts.is_empty() {
        s.push_str(&format!("{} ARP conflict(s): see the WARNING lines\n", report.conflicts.len()));
    }
    s
}

fn step_text(step: &Step, prev: Option<&Step>, last: bool) -> String {
    let mut s = format!("== {}  {}\n", step.at, step.event);
    for c in &step.changes {
        let kind = if c.warning { "Warning" } else { "Normal" };
        s.push_str(&format!("   {kind:<8} {}: {}\n", c.service, c.change));
    }
    // The step header already names the event; its timeline entry adds nothing unless it explains more.
    for e in step.timeline.iter().filter(|e| !(e.kind == "event" && e.text == step.event)) {
        s.push_str(&format!("   {}  {}\n", e.at, e.text));
    }
    for t in &step.takeovers {
        let verb = match &t.from {
            Some(from) => format!("takeover {}: {from} -> {}", t.vip, t.to),
            None => format!("elected {}: {}", t.vip, t.to),
        };
        let mut line = format!("   {verb}: MASTER after {}", ms(t.master_after_ms));
        if let Some(n) = t.neigh_after_ms {
            line.push_str(&format!(", client's ip neigh after {}", ms(n)));
        }
        if let Some(o) = t.outage_ms {
            line.push_str(&format!(", client outage {}", ms(o)));
        }
        s.push_str(&line);
        s.push('\n');
    }
    let down: Vec<String> = step
        .nodes
        .iter()
        .filter(|n| n.machine != "up" || !n.ready)
        .map(|n| format!("{} {}{}", n.name, n.machine, if n.ready { "" } else { " NotReady" }))
        .collect();
    let when =
        if last { format!("at {} (end of run)", step.state_at) } else { format!("just before {}", step.state_at) };
    s.push_str(&format!("   -- state {when}"));
    if !down.is_empty() {
        s.push_str(&format!("; nodes: {}", down.join(", ")));
    }
    if !step.partitions.is_empty() {
        let cut: Vec<String> = step.partitions.iter().map(|(a, b)| format!("{a}/{b}")).collect();
        s.push_str(&format!("; cut off: {}", cut.join(" ")));
    }
    s.push('\n');
    for v in &step.vips {
        let before = prev.and_then(|p| p.vips.iter().find(|x| x.vip == v.vip));
        let moved = match (before.and_then(|b| b.holder.as_deref()), v.holder.as_deref()) {
            (Some(a), Some(b)) if a != b => format!("  (takeover: {a} -> {b}, gratuitous ARP sent)"),
            (Some(a), None) => format!("  (withdrawn from {a})"),
            (None, Some(b)) if before.is_some() => format!("  (announced by {b}, gratuitous ARP sent)"),
            _ => String::new(),
        };
        let holder = match (&v.holder, v.protocol.as_str()) {
            (Some(_), _) if v.answering.len() > 1 => {
                format!("SPLIT BRAIN: {} all answer the client's ARP", v.answering.join(", "))
            }
            (Some(h), _) if v.holders.len() > 1 => {
                let others: Vec<&str> = v.holders.iter().map(String::as_str).filter(|x| x != h).collect();
                format!("{h} (also MASTER beyond a partition: {})", others.join(", "))
            }
            (Some(h), _) => h.clone(),
            (None, "bgp") => format!("BGP ECMP via {}", v.candidates.join(",")),
            (None, _) if !v.candidates.is_empty() => "none: no live speaker holds it".to_string(),
            (None, _) => "none: no candidate node, VIP withdrawn".to_string(),
        };
        s.push_str(&format!(
            "   {} ({} {}, {} {}): holder {}{}\n",
            v.vip,
            v.pool,
            v.protocol,
            v.services.join(","),
            v.policy,
            holder,
            moved
        ));
        s.push_str(&format!(
            "     candidates: {}\n",
            if v.candidates.is_empty() { "-".into() } else { v.candidates.join(", ") }
        ));
        if let Some(vrid) = v.vrid {
            let prios: Vec<String> = v.priorities.iter().map(|p| format!("{} {}", p.node, p.priority)).collect();
            s.push_str(&format!("     VRRP: VRID {vrid}, priorities {}\n", prios.join(", ")));
        }
        if !v.stale_on.is_empty() {
            s.push_str(&format!(
                "     still configured on: {} (down or cut off; harmless while it stays so)\n",
                v.stale_on.join(", ")
            ));
        }
        if let Some(n) = &v.ip_neigh {
            s.push_str(&format!("     client$ ip neigh  -> {n}\n"));
        }
        let reach = if v.reaches.is_empty() {
            "no reply: no node answers or no ready Pod behind it".to_string()
        } else {
            format!("You've hit {}", v.reaches.join(" | You've hit "))
        };
        s.push_str(&format!("     client$ curl {}  -> {reach}\n", v.vip));
        if !v.timeouts.is_empty() {
            s.push_str(&format!(
                "       (requests kube-proxy sends to {} time out: listed ready, but its node is unreachable)\n",
                v.timeouts.join(", ")
            ));
        }
    }
    if step.vips.is_empty() {
        s.push_str("   no VIPs allocated\n");
    }
    s
}

/// A duration in milliseconds, as `306.3 ms` or `3.050 s`.
fn ms(v: f64) -> String {
    if v < 1000.0 { format!("{v:.1} ms") } else { format!("{:.3} s", v / 1000.0) }
}

pub fn validate(inputs: &Inputs, format: Format) -> Result<ExitCode> {
    let loaded = Loaded::load(&inputs.paths)?;
    warn_all(&loaded.warnings);
    let mut all = validate::validate_cluster(&loaded.cluster);
    // What the speakers' VRRP plan would approximate (default VRID range), naming the VIPs.
    all.extend(validate::vrrp_plan(&loaded.cluster, &Default::default()));
    let (problems, warnings): (Vec<_>, Vec<_>) = all.iter().partition(|p| p.is_error());
    match format {
        Format::Table => {
            for w in &warnings {
                eprintln!("{w}");
            }
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                let svcs: BTreeSet<_> = loaded
                    .cluster
                    .services
                    .iter()
                    .filter(|s| openelb_core::lifecycle::is_ours(s))
                    .map(|s| s.key())
                    .collect();
                println!(
                    "ok: {} Eip(s), {} OpenELB Service(s), {} node(s): no problems, {} warning(s)",
                    loaded.cluster.pools.len(),
                    svcs.len(),
                    loaded.cluster.nodes.len(),
                    warnings.len()
                );
            } else {
                println!("{} problem(s)", problems.len());
            }
        }
        Format::Yaml | Format::Json => {
            let list: Vec<_> = all
                .iter()
                .map(|p| {
                    let severity = if p.is_error() { "error" } else { "warning" };
                    serde_json::json!({"object": p.object, "field": p.field, "value": p.value,
                        "message": p.message, "severity": severity})
                })
                .collect();
            let doc = serde_json::json!({"problems": list});
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", serde_yaml::to_string(&doc)?);
            }
        }
    }
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn crd() -> Result<ExitCode> {
    print!("{}", openelb_k8s::crd::crd_yaml()?);
    Ok(ExitCode::SUCCESS)
}
