//! The subcommands: each loads the manifests, runs the core over them and prints the result.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use openelb_core::validate;
use serde::Serialize;

use crate::input::{self, Loaded};
use crate::output::table;
use crate::scenario::{Scenario, SimTime};
use crate::sim::{ChangeView, VipView, World};
use crate::{Format, Inputs};

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn world(loaded: &Loaded) -> World {
    World::new(
        loaded.cluster.clone(),
        loaded.deployments.clone(),
        loaded.explicit_endpoints.clone(),
        input::converter(),
    )
}

pub fn allocate(inputs: &Inputs, format: Format) -> Result<ExitCode> {
    let loaded = input::load(&inputs.paths)?;
    warn_all(&loaded.warnings);
    let mut world = world(&loaded);
    warn_all(&world.warnings());
    let changes = world.reconcile();
    match format {
        Format::Table => {
            print!("{}", services_table(&world, &loaded));
            println!();
            print!("{}", eips_table(&world));
            if !changes.is_empty() {
                println!();
                print!("{}", changes_text(&changes));
            }
        }
        Format::Yaml | Format::Json => {
            let objects = input::updated_objects(&loaded, &world)?;
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
/// filled in by [`input::display_ports`] when the manifests leave them out.
fn services_table(world: &World, loaded: &Loaded) -> String {
    let mut rows = Vec::new();
    let mut services: Vec<_> = world.cluster.services.iter().collect();
    services.sort_by_key(|s| s.key());
    for s in services {
        let external = if !s.ingress.is_empty() {
            s.ingress.join(",")
        } else if s.type_ == "LoadBalancer" {
            "<pending>".to_string()
        } else {
            "<none>".to_string()
        };
        let (cluster_ip, ports) = input::display_ports(loaded, s);
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

#[derive(Serialize)]
struct Step {
    at_ms: u64,
    at: String,
    event: String,
    changes: Vec<ChangeView>,
    vips: Vec<VipView>,
}

pub fn simulate(inputs: &Inputs, scenario: Option<&Path>, format: Format) -> Result<ExitCode> {
    let loaded = input::load(&inputs.paths)?;
    warn_all(&loaded.warnings);
    let scenario = scenario.map(Scenario::load).transpose()?;
    let mut world = world(&loaded);
    warn_all(&world.warnings());

    let mut steps = Vec::new();
    let changes = world.reconcile();
    steps.push(Step { at_ms: 0, at: SimTime(0).to_string(), event: "start".into(), changes, vips: world.vips() });
    for (i, ev) in scenario.iter().flat_map(|s| s.events.iter()).enumerate() {
        world.apply(&ev.event).with_context(|| format!("scenario events[{i}] ({} {})", ev.at, ev.event))?;
        let changes = world.reconcile();
        steps.push(Step {
            at_ms: ev.at.0,
            at: ev.at.to_string(),
            event: ev.event.to_string(),
            changes,
            vips: world.vips(),
        });
    }

    match format {
        Format::Table => {
            if let Some(name) = scenario.as_ref().and_then(|s| s.name()) {
                println!("scenario {name}");
            }
            let mut prev: Option<&Step> = None;
            for step in &steps {
                print!("{}", step_text(step, prev));
                prev = Some(step);
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({"steps": steps}))?),
        Format::Yaml => print!("{}", serde_yaml::to_string(&serde_json::json!({"steps": steps}))?),
    }
    Ok(ExitCode::SUCCESS)
}

fn step_text(step: &Step, prev: Option<&Step>) -> String {
    let mut s = format!("== {}  {}\n", step.at, step.event);
    for c in &step.changes {
        let kind = if c.warning { "Warning" } else { "Normal" };
        s.push_str(&format!("   {kind:<8} {}: {}\n", c.service, c.change));
    }
    for v in &step.vips {
        let before = prev.and_then(|p| p.vips.iter().find(|x| x.vip == v.vip));
        let moved = match (before.and_then(|b| b.holder.as_deref()), v.holder.as_deref()) {
            (Some(a), Some(b)) if a != b => format!("  (takeover: {a} -> {b}, gratuitous ARP sent)"),
            (Some(a), None) => format!("  (withdrawn from {a})"),
            (None, Some(b)) if before.is_some() => format!("  (announced by {b}, gratuitous ARP sent)"),
            _ => String::new(),
        };
        let holder = match (&v.holder, v.protocol.as_str()) {
            (Some(h), _) => h.clone(),
            (None, "bgp") => format!("BGP ECMP via {}", v.candidates.join(",")),
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
        if let Some(n) = &v.ip_neigh {
            s.push_str(&format!("     client$ ip neigh  -> {n}\n"));
        }
        let reach = if v.reaches.is_empty() {
            "no reply: no node answers or no ready Pod behind it".to_string()
        } else {
            format!("You've hit {}", v.reaches.join(" | You've hit "))
        };
        s.push_str(&format!("     client$ curl {}  -> {reach}\n", v.vip));
    }
    if step.vips.is_empty() {
        s.push_str("   no VIPs allocated\n");
    }
    s
}

pub fn validate(inputs: &Inputs, format: Format) -> Result<ExitCode> {
    let loaded = input::load(&inputs.paths)?;
    warn_all(&loaded.warnings);
    let all = validate::validate_cluster(&loaded.cluster);
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
