//! `cargo xtask bench locality`: how much of each node's traffic stays on
//! its own backend, and how fast a node spills when that backend stops
//! answering. A simulated cluster (`l4lb_tests::cluster`) serves one VIP
//! with a backend on every node; every node streams paced connects through
//! it; after a healthy stretch, one node's backend stops answering that
//! node's own clients (their SYNs dropped on `lo`, no Marathon event). Each
//! `--locality` mode (`off`, `node`) gets fresh clusters, one per run.
//!
//! Safety: everything runs in the cluster's namespaces and child cgroups;
//! connects are bounded by count and timeout, every wait by a deadline.
use std::time::{Duration, Instant};

use anyhow::Result;
use l4lb_tests::{
    Cluster, ClusterSpec,
    cluster::{LocalRun, LocalSpec},
};

use super::{
    control,
    stats::{self, med_range_if_many, median},
};
use crate::{interrupt, report, util};

const TOTAL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Issue 15's goals: ≥ 90 % of a node's new connections local while its
/// backend is healthy; spilled within 1 s when it is not.
const GOAL_SHARE: f64 = 0.9;
const GOAL_SPILL_MS: f64 = 1000.0;

#[derive(clap::Args, Clone, Debug)]
pub struct LocalityArgs {
    /// Nodes in the cluster (each with one backend and one client stream).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=16))]
    pub nodes: u32,
    /// Clusters (each one kill) per mode.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub runs: u32,
    /// A new connection on each node every this many ms.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub interval_ms: u64,
}

/// What one mode measured over its runs.
#[derive(Default)]
struct Measured {
    /// Per node and run: share of greeted connections on its own backend, before the kill.
    shares: Vec<f64>,
    /// Per run: the victim's last connect to its own backend, ms after the kill
    /// (NaN: still choosing it at the end).
    spills: Vec<f64>,
    /// Per run: the victim's connections that failed or stalled, and all, after the kill.
    bad: Vec<f64>,
    total: Vec<f64>,
}

pub fn locality(a: LocalityArgs) -> Result<()> {
    control::prepare()?;
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    let started = Instant::now();
    let machine = report::machine_line();
    let mut rows = vec![];
    for mode in ["off", "node"] {
        let m = measure(&a, mode, deadline)?;
        rows.push(row(mode, &m));
    }
    let header = [
        "--locality",
        "own backend's share, per node (median, min-max)",
        "victim spilled after, ms",
        "victim's bad connects after the kill",
        "goal",
    ];
    println!("\n{}", describe(&a));
    print!("{}", report::table(&header, &rows));
    println!("{machine}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}

fn measure(a: &LocalityArgs, mode: &str, deadline: Instant) -> Result<Measured> {
    let mut m = Measured::default();
    let mut spec = LocalSpec::new(None);
    spec.interval_ms = a.interval_ms;
    for r in 0..a.runs {
        interrupt::check()?;
        util::time_left(deadline)?;
        let tag = format!("bench-loc-{mode}");
        let c = Cluster::new(
            ClusterSpec::new(&tag, a.nodes as usize).agent_args(&["--locality", mode]),
        )?;
        let victim = r as usize % a.nodes as usize;
        spec.victim = Some(victim);
        let run = c.local_run(&spec)?;
        collect(&run, a.nodes as usize, victim, &mut m);
        if r == 0 {
            println!(
                "\n--locality {mode}, run 1: node {victim}'s curve (its backend dropped at 0)\n{}",
                run.curve(victim).render()
            );
        }
    }
    Ok(m)
}

fn collect(run: &LocalRun, nodes: usize, victim: usize, m: &mut Measured) {
    for i in 0..nodes {
        let (local, total) = run.local_share(i, f64::MIN, 0.0);
        m.shares.push(local as f64 / total.max(1) as f64);
    }
    m.spills.push(run.last_local_ms(victim).unwrap_or(0.0));
    let (ok, stalled, failed) = run.curve(victim).tally(0.0, f64::MAX);
    m.bad.push((stalled + failed) as f64);
    m.total.push((ok + stalled + failed) as f64);
}

fn row(mode: &str, m: &Measured) -> Vec<String> {
    let pct: Vec<f64> = m.shares.iter().map(|s| s * 100.0).collect();
    let min_share = m.shares.iter().copied().fold(f64::MAX, f64::min);
    let worst_spill = m.spills.iter().copied().fold(0.0, f64::max);
    let met = min_share >= GOAL_SHARE && worst_spill <= GOAL_SPILL_MS;
    vec![
        mode.to_string(),
        format!("{} %", med_range_if_many(&pct, 1)),
        med_range_if_many(&m.spills, 0),
        format!("{:.0} of {:.0}", median(&m.bad), median(&m.total)),
        match mode {
            "off" => "- (contrast)".into(),
            _ => stats::met(met).into(),
        },
    ]
}

fn describe(a: &LocalityArgs) -> String {
    format!(
        "Locality on {} nodes, one backend each behind one VIP: every node connects every {} ms for 2 s, \
         then one node's backend stops answering that node's clients (SYNs dropped on lo, no Marathon \
         event) for 2 s; {} run(s) per mode, a fresh cluster each. \"own backend's share\": greeted \
         connections on the node's own backend before the kill. \"spilled after\": the victim's last \
         connect to its own backend (or one that failed or stalled), ms after the kill. Goal (issue 15): \
         >= {:.0} % local, spilled <= {GOAL_SPILL_MS:.0} ms.",
        a.nodes,
        a.interval_ms,
        a.runs,
        GOAL_SHARE * 100.0
    )
}
