//! The CLI's commands other than `run` and `monitor`: one function each,
//! reading the pinned maps (or a config file) and printing a table or JSON.
use std::{net::SocketAddr, path::Path, time::Duration};

use l4lb_agent::{
    cli::{ExplainArgs, PktgenArgs},
    datapath, lb_explain, naming, packet, sockdestroy, table,
};

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub fn vips(pin_root: &Path, json: bool) -> anyhow::Result<()> {
    let maps = datapath::Maps::open_pinned(pin_root)?;
    let rows = table::vip_rows(&maps)?;
    if json {
        return print_json(&rows);
    }
    if let Some(p) = maps.lb_policy() {
        let probes = maps.health_probes().unwrap_or_default();
        println!(
            "TCP connect() policy: {}; down backends probed by: {}",
            p.name(),
            probes.name()
        );
    }
    table::print_vips(&rows);
    Ok(())
}

pub fn backends(pin_root: &Path, json: bool) -> anyhow::Result<()> {
    let maps = datapath::Maps::open_pinned(pin_root)?;
    let rows = table::backend_rows(&table::vip_rows(&maps)?);
    if json {
        return print_json(&rows);
    }
    table::print_backends(&rows);
    Ok(())
}

pub fn stats(pin_root: &Path, json: bool) -> anyhow::Result<()> {
    let maps = datapath::Maps::open_pinned(pin_root)?;
    let stats = table::stats(&maps)?;
    if json {
        return print_json(&stats);
    }
    table::print_stats(&stats);
    Ok(())
}

/// Parses a VIP file as `run` would and prints the VIPs it declares.
pub fn check(config: &Path, json: bool) -> anyhow::Result<()> {
    let cfg = l4lb_agent::source::config_file::load_config(config)?;
    let desired = cfg.desired_state(&mut naming::VipAllocator::default())?;
    if json {
        return print_json(&desired.services.iter().collect::<Vec<_>>());
    }
    for (vip, spec) in &desired.services {
        let name = spec
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        println!("{vip}{name}");
        for (addr, w) in &spec.backends {
            println!("  -> {addr} weight {w}");
        }
    }
    println!("ok: {} VIPs", desired.services.len());
    Ok(())
}

pub fn pktgen(a: PktgenArgs) -> anyhow::Result<()> {
    if !(a.seconds > 0.0 && a.seconds <= 60.0) {
        anyhow::bail!("--seconds must be in (0, 60]");
    }
    let spec = datapath::pktgen::Spec {
        iface: a.iface,
        src_mac: datapath::pktgen::parse_mac(&a.src_mac)?,
        dst_mac: datapath::pktgen::parse_mac(&a.dst_mac)?,
        src: a.src,
        dst: a.dst,
        flows: a.flows,
        payload: a.payload as usize,
        max_frames: a.frames,
        max_time: Duration::from_secs_f64(a.seconds),
        rate: a.rate,
    };
    let r = datapath::pktgen::run(&spec)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

pub fn pktsink(iface: &str, seconds: u64) -> anyhow::Result<()> {
    datapath::pktgen::sink(iface, Duration::from_secs(seconds), || {
        // The caller waits for this line before it sends.
        println!("ready");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
}

/// What the socket hooks and the loaded XDP program would do with a packet.
pub fn explain(a: &ExplainArgs) -> anyhow::Result<()> {
    if a.src.is_ipv4() != a.vip.is_ipv4() {
        anyhow::bail!(
            "--src {} and --vip {} must be of the same family",
            a.src,
            a.vip
        );
    }
    let tuple = packet::Tuple {
        proto: a.proto,
        src: a.src,
        dst: a.vip,
    };
    let socket = {
        let maps = datapath::Maps::open_pinned(&a.pin_root)?;
        lb_explain::explain(&maps, a.vip, a.proto)?
    };
    let e = datapath::xdp::explain(&a.pin_root, &tuple, a.repeat, a.live)?;
    if a.json {
        // The XDP answer's fields at the top, the socket path's under "socket".
        let mut v = serde_json::to_value(&e)?;
        v["socket"] = serde_json::to_value(&socket)?;
        return print_json(&v);
    }
    println!("XDP {}: {}", e.packet, e.verdict);
    if a.repeat > 1 {
        println!("{} runs, {} ns per run", a.repeat, e.ns_per_run);
    }
    lb_explain::print(socket.as_ref());
    Ok(())
}

pub fn destroy_udp(
    backends: &[SocketAddr],
    vips: &[SocketAddr],
    pin_root: &Path,
) -> anyhow::Result<()> {
    let maps = datapath::Maps::open_pinned(pin_root)?;
    let report = sockdestroy::destroy_connected_udp(backends, |cookie, backend| {
        maps.revnat_vip(cookie, backend)
            .is_some_and(|vip| vips.is_empty() || vips.contains(&vip))
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

pub fn verify(pin_root: &Path, cgroup: Option<&Path>) -> anyhow::Result<()> {
    let report = l4lb_agent::verify::verify(pin_root, cgroup)?;
    print_json(&report)?;
    if !report.problems.is_empty() {
        anyhow::bail!(
            "{} problem(s) in {}",
            report.problems.len(),
            pin_root.display()
        );
    }
    Ok(())
}

pub fn teardown(pin_root: &Path) -> anyhow::Result<()> {
    for path in datapath::teardown(pin_root)? {
        println!("removed {}", path.display());
    }
    if datapath::escape::teardown()? {
        println!(
            "removed interface {} and its VIP routes",
            datapath::escape::DEV
        );
    }
    Ok(())
}
