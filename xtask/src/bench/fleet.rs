//! `cargo xtask bench fleet`: N agents on one control plane. For each fleet
//! size a simulated cluster (`l4lb_tests::cluster`: per node a netns, child
//! cgroup and pin root) follows one fake Marathon of `--apps` apps; the run
//! measures what the fleet costs Marathon (requests and body bytes per
//! change and per minute of steady state), how long a change takes to reach
//! every node's maps, and what N full re-reads cost at once (a resync
//! stampede: every agent signalled together) next to the same N spread over
//! the resync jitter's window. The measuring is in `fleet_run.rs`.
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{
    control,
    fleet_run::{Fleet, FleetSpec, Round, run_fleet},
    stats::{median, percentile},
};
use crate::{interrupt, report};

const SECTION: &str = "xtask bench fleet";
const TOTAL_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// The agent's default `--marathon-resync-secs`, for the per-minute model.
const DEFAULT_RESYNC_S: f64 = 60.0;

#[derive(clap::Args, Clone, Debug)]
pub struct FleetArgs {
    /// Fleet sizes, run one after the other (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "5,10,20",
          value_parser = clap::value_parser!(u32).range(1..=40))]
    pub nodes: Vec<u32>,
    /// Marathon apps (each a VIP) every agent follows.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub apps: u32,
    /// Tasks per app.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub tasks: u32,
    /// Changes (a task's health flip) per fleet.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub changes: u32,
    /// Seconds of steady state (no change) measured per fleet.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub steady_secs: u64,
    /// The agents' `--marathon-resync-secs`.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=600))]
    pub resync_secs: u64,
    /// The agents' `--marathon-resync-jitter-pct`.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=50))]
    pub jitter_pct: u8,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

pub fn fleet(a: FleetArgs) -> Result<()> {
    control::prepare()?;
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    let started = Instant::now();
    let machine = report::machine_line();
    let mut fleets = vec![];
    for &n in &a.nodes {
        interrupt::check()?;
        let spec = FleetSpec {
            nodes: n as usize,
            apps: a.apps,
            tasks: a.tasks,
            changes: a.changes,
            steady: Duration::from_secs(a.steady_secs),
            resync_secs: a.resync_secs,
            jitter_pct: a.jitter_pct,
        };
        fleets.push(run_fleet(&spec, deadline)?);
    }
    let md = markdown(&a, &fleets, &machine);
    println!("\n{md}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        report::write_section(SECTION, &md, &report::utc_date()?)?;
    }
    Ok(())
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

/// Per change: the last node's time (the change is everywhere then); NaN
/// when a node missed it (counted by [`missed`]).
fn everywhere(f: &Fleet) -> Vec<f64> {
    f.per_change
        .iter()
        .map(|c| {
            if c.iter().any(|x| x.is_nan()) {
                return f64::NAN;
            }
            c.iter().copied().fold(f64::MIN, f64::max)
        })
        .collect()
}

fn missed(f: &Fleet) -> usize {
    f.per_change.iter().flatten().filter(|x| x.is_nan()).count()
}

/// Requests and MB per minute at the agent's default resync period: each
/// agent's full re-read every `60 s × (1 − jitter/2)` on average.
fn model_per_min(f: &Fleet, jitter_pct: u8) -> (f64, f64) {
    let period = DEFAULT_RESYNC_S * (1.0 - f64::from(jitter_pct) / 200.0);
    let reads = f.nodes as f64 * 60.0 / period;
    (reads, mb(reads * f.body_bytes))
}

fn round_cells(r: &Round) -> String {
    format!(
        "{:.0} / {:.0} ms, all done {:.2} s, server CPU {:.2} s",
        median(&r.read_ms),
        percentile(&r.read_ms, 100.0),
        r.wall_s,
        r.server_cpu_s
    )
}

fn row(a: &FleetArgs, f: &Fleet) -> Vec<String> {
    let all: Vec<f64> = f.per_change.iter().flatten().copied().collect();
    let every = everywhere(f);
    let k = f.per_change.len().max(1) as f64;
    let ch = &f.changes_served;
    let per_min = 60.0 / f.steady_s.max(1e-9);
    let (model_reads, model_mb) = model_per_min(f, a.jitter_pct);
    vec![
        f.nodes.to_string(),
        format!("{:.0}", f.ready_s),
        format!("{:.1} / {:.1}", median(&all), percentile(&all, 99.0)),
        format!(
            "{:.1} / {:.1} (missed {})",
            median(&every),
            percentile(&every, 99.0),
            missed(f)
        ),
        format!(
            "{:.1} req, {:.1} KB (full reads {:.0})",
            ch.app.0 / k,
            (ch.app.1 + ch.events_bytes) / k / 1e3,
            ch.app_list.0
        ),
        format!(
            "{:.1} req, {:.1} MB",
            f.steady.requests() * per_min,
            mb(f.steady.bytes()) * per_min
        ),
        format!("{model_reads:.0} full reads, {model_mb:.0} MB"),
        round_cells(&f.stampede),
        round_cells(&f.spread),
        format!("{:.0}", median(&f.rss_mb)),
    ]
}

const HEADER: [&str; 10] = [
    "nodes",
    "ready, s",
    "change -> a node's maps, ms p50 / p99",
    "change -> every node's maps, ms p50 / p99",
    "Marathon per change",
    "Marathon per minute, steady (measured; a full read is apps + pods)",
    "per minute at the default 60 s resync (model)",
    "N full re-reads at once: read p50 / max",
    "N full re-reads spread over the jitter window",
    "agent RSS, MB",
];

fn markdown(a: &FleetArgs, fleets: &[Fleet], machine: &str) -> String {
    let rows: Vec<Vec<String>> = fleets.iter().map(|f| row(a, f)).collect();
    let body_mb = fleets.first().map_or(f64::NAN, |f| mb(f.body_bytes));
    let nodes: Vec<String> = a.nodes.iter().map(u32::to_string).collect();
    let mut md = format!(
        "## Fleet: N agents on one Marathon (`cargo xtask bench fleet`)\n\n\
         `cargo xtask bench fleet --nodes {} --apps {} --tasks {} --changes {} --steady-secs {} \
         --resync-secs {} --jitter-pct {}` on {{date}}.\n\n",
        nodes.join(","),
        a.apps,
        a.tasks,
        a.changes,
        a.steady_secs,
        a.resync_secs,
        a.jitter_pct
    );
    md.push_str(&describe(a, body_mb));
    md.push_str("\n\n");
    md.push_str(&report::md_table(&HEADER, &rows));
    md.push('\n');
    md.push_str(&extrapolate(a, fleets));
    md.push_str(&format!("\n\n{machine}\n"));
    md
}

fn describe(a: &FleetArgs, body_mb: f64) -> String {
    format!(
        "Each fleet: N simulated nodes (`l4lb_tests::cluster`: per node a netns on one bridge, a child \
         cgroup, a pin root and `l4lb-agent run --marathon URL --marathon-resync-secs {} \
         --marathon-resync-jitter-pct {}`), all on one `l4lb-fake-marathon` of {} apps x {} tasks \
         ({body_mb:.2} MB per full `/v2/apps?embed=apps.tasks` read), release builds; the agents share \
         the 2 cores with the fake Marathon. Counts are the fake Marathon's own (requests, and body bytes \
         including every event and keepalive written to the event streams; headers not counted). \
         **Change**: a task's health flips (down, then up again: {} changes), fired through the fake \
         Marathon's control API; a node's time is the control call -> its agent's maps serving the \
         table of that event (its `table applied` line's timestamp less `serving_for_us`, same clock). \
         **Steady**: {} s with no change; the model column is the full re-reads the default period \
         costs (one every 60 s x (1 - jitter/2) per agent on average). **Full re-reads**: SIGHUP to \
         every agent at once (all resyncs falling together: the stampede), then the same N spread \
         evenly over the jitter window ({} % of the resync period); per read the agent's own `apps \
         read` took_ms (GET + decode), the time until the last agent applied, and the fake \
         Marathon's CPU time over the round.",
        a.resync_secs, a.jitter_pct, a.apps, a.tasks, a.changes, a.steady_secs, a.jitter_pct
    )
}

/// Growth with N and what 1,000 nodes would cost, from the largest fleet.
fn extrapolate(a: &FleetArgs, fleets: &[Fleet]) -> String {
    let Some(f) = fleets.iter().max_by_key(|f| f.nodes) else {
        return String::new();
    };
    let n = f.nodes as f64;
    let k = f.per_change.len().max(1) as f64;
    let per_node_change = (f.changes_served.app.1 + f.changes_served.events_bytes) / k / n;
    let (reads, mbm) = model_per_min(f, a.jitter_pct);
    let reads_1k = reads / n * 1000.0;
    let mbm_1k = mbm / n * 1000.0;
    let read_s = median(&f.spread.read_ms) / 1000.0;
    format!(
        "\nOn paper, 1,000 nodes (linear in N from the {}-node fleet): per change {:.0} requests and \
         {:.1} MB ({:.2} KB per node: the app's GET and the event); steady state {:.0} full reads and \
         {:.0} MB per minute ({:.1} MB/s) at the default 60 s resync with {} % jitter; a stampede \
         would ask for 1,000 full reads ({:.1} GB) at once, jittered they arrive {:.1} per second over \
         a {:.0} s window (a full read took the agent {:.2} s spread, GET + decode, here).",
        f.nodes,
        1000.0,
        per_node_change * 1000.0 / 1e6,
        per_node_change / 1e3,
        reads_1k,
        mbm_1k,
        mbm_1k / 60.0,
        a.jitter_pct,
        1000.0 * f.body_bytes / 1e9,
        1000.0 / (DEFAULT_RESYNC_S * f64::from(a.jitter_pct).max(1.0) / 100.0),
        DEFAULT_RESYNC_S * f64::from(a.jitter_pct) / 100.0,
        read_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_everywhere_when_the_last_node_has_it() {
        let f = Fleet {
            nodes: 2,
            per_change: vec![vec![3.0, 7.0], vec![f64::NAN, 2.0]],
            body_bytes: 1e6,
            ..Fleet::default()
        };
        let e = everywhere(&f);
        assert_eq!(e[0], 7.0);
        assert!(e[1].is_nan(), "a node missed it: not everywhere");
        assert_eq!(missed(&f), 1);
        // 2 agents, one read each per 54 s on average at 20 % jitter.
        let (reads, mb) = model_per_min(&f, 20);
        assert!((reads - 2.0 * 60.0 / 54.0).abs() < 1e-9);
        assert!((mb - reads).abs() < 1e-9);
    }
}
