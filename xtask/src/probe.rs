//! `l4lb-probe latency` in a sandbox, for the connect benchmarks (socket,
//! peers, scaling): one place builds its command line and reads its JSON, so
//! they all measure the same way.
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Sandbox, probe_bin};
use serde_json::Value;

use crate::util;

/// Uncounted connects the probe makes before each measured run (they still
/// go through the BPF hook, so counter checks add them).
pub const WARMUP: u32 = 100;

/// One target's result of one `l4lb-probe latency` run.
#[derive(Clone, Debug, Default)]
pub struct Lat {
    pub to: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub conns_per_sec: f64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: String,
    /// Per cycle (with `--per-conn` only, else empty): the connection's wall
    /// time and the probe thread's CPU time, ns; 0 where it failed.
    pub wall_ns: Vec<u64>,
    pub cpu_ns: Vec<u64>,
}

impl Lat {
    fn from_json(v: &Value) -> Result<Lat> {
        let f = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {v}"));
        Ok(Lat {
            to: v["to"].as_str().unwrap_or("?").to_string(),
            p50_us: f("p50_us")?,
            p99_us: f("p99_us")?,
            mean_us: f("mean_us")?,
            conns_per_sec: f("conns_per_sec")?,
            ok: v["ok"].as_u64().unwrap_or(0),
            errors: v["errors"].as_u64().unwrap_or(0),
            error_kinds: v["error_kinds"].to_string(),
            wall_ns: ns_list(&v["wall_ns"]),
            cpu_ns: ns_list(&v["cpu_ns"]),
        })
    }
}

/// A list of ns (absent: empty).
fn ns_list(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// `l4lb-probe latency --rst` in the sandbox's netns and cgroup, targets
/// interleaved connection by connection; one result per target, in order.
/// Killed after `kill_after` or at `deadline`, whichever comes first. Fails if
/// a target had no successful connection.
pub fn latency(
    sb: &Sandbox,
    targets: &[&str],
    n: u32,
    kill_after: Duration,
    deadline: Instant,
) -> Result<Vec<Lat>> {
    latency_with(sb, targets, n, None, kill_after, deadline)
}

/// [`latency`] with each cycle's wall and CPU time per target
/// (`Lat::wall_ns`, `Lat::cpu_ns`), for paired comparisons; the first
/// `rotate` targets move one place each cycle (`--rotate`).
pub fn latency_per_conn(
    sb: &Sandbox,
    targets: &[&str],
    n: u32,
    rotate: usize,
    kill_after: Duration,
    deadline: Instant,
) -> Result<Vec<Lat>> {
    latency_with(sb, targets, n, Some(rotate), kill_after, deadline)
}

fn latency_with(
    sb: &Sandbox,
    targets: &[&str],
    n: u32,
    per_conn: Option<usize>,
    kill_after: Duration,
    deadline: Instant,
) -> Result<Vec<Lat>> {
    let left = util::time_left(deadline)?;
    let stdout = run_latency(sb, targets, n, per_conn, kill_after.min(left))?;
    let lats = per_target(&stdout, targets.len())?
        .iter()
        .map(Lat::from_json)
        .collect::<Result<Vec<_>>>()?;
    for l in &lats {
        if l.ok == 0 {
            bail!("no connection to {} succeeded: {}", l.to, l.error_kinds);
        }
    }
    Ok(lats)
}

/// Runs the probe; its stdout (the JSON).
fn run_latency(
    sb: &Sandbox,
    targets: &[&str],
    n: u32,
    per_conn: Option<usize>,
    timeout: Duration,
) -> Result<String> {
    let mut cmd = sb.in_cgroup(probe_bin());
    cmd.arg("latency");
    for t in targets {
        cmd.args(["--to", t]);
    }
    // --rst: tens of thousands of connections per run must not pile up in
    // TIME_WAIT.
    cmd.args([
        "-n",
        &n.to_string(),
        "--warmup",
        &WARMUP.to_string(),
        "--rst",
    ]);
    if let Some(rotate) = per_conn {
        cmd.args(["--per-conn", "--rotate", &rotate.to_string()]);
    }
    util::stdout_timeout(
        &mut cmd,
        &format!("l4lb-probe latency {targets:?}"),
        timeout,
    )
}

/// The probe prints one object for one target and `{"targets": [...]}` for
/// several; either way, one object per target.
fn per_target(stdout: &str, targets: usize) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("l4lb-probe printed {stdout:?}"))?;
    let list: Vec<Value> = if targets == 1 {
        vec![v]
    } else {
        v["targets"]
            .as_array()
            .cloned()
            .with_context(|| format!("no targets in {stdout}"))?
    };
    if list.len() != targets {
        bail!(
            "l4lb-probe answered for {} of {targets} targets",
            list.len()
        );
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_per_target() {
        let one = r#"{"to":"a","p50_us":1,"p99_us":2,"mean_us":1.5,"conns_per_sec":9,"ok":3}"#;
        let l = Lat::from_json(&per_target(one, 1).unwrap()[0]).unwrap();
        assert_eq!((l.to.as_str(), l.p99_us, l.ok, l.errors), ("a", 2.0, 3, 0));
        assert!(l.wall_ns.is_empty() && l.cpu_ns.is_empty());
        let per = r#"{"to":"a","p50_us":1,"p99_us":2,"mean_us":1.5,"conns_per_sec":9,"ok":3,"wall_ns":[5,0,7],"cpu_ns":[2,0,3]}"#;
        let l = Lat::from_json(&per_target(per, 1).unwrap()[0]).unwrap();
        assert_eq!((l.wall_ns, l.cpu_ns), (vec![5, 0, 7], vec![2, 0, 3]));
        let two = format!(r#"{{"targets":[{one},{one}]}}"#);
        assert_eq!(per_target(&two, 2).unwrap().len(), 2);
        assert!(per_target(&two, 3).is_err());
        assert!(per_target("{}", 2).is_err());
    }
}
