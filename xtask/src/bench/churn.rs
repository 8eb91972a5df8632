//! `cargo xtask bench churn`: sustained new TCP connections per second, and
//! the connections that fail, through each way to a backend that `bench
//! peers` compares (direct, l4lb VIP, iptables DNAT, nftables DNAT, HAProxy;
//! `peer_setup.rs`), with the NAT tables present (conntrack on) and the
//! kernel's default sysctls (`tcp_tw_reuse`, port range, conntrack limits).
//!
//! Each target runs in a sandbox of its own, set up the same way (backend,
//! rules, HAProxy, agent), so none inherits another's TIME_WAIT sockets or
//! conntrack entries: `l4lb-probe tcp --parallel P --seconds S` in the
//! agent's cgroup opens connections back to back (connect, read the
//! greeting, close with FIN: the client keeps TIME_WAIT, as real clients
//! do). Bounded: by `--seconds`, a connection count and a kill timeout.
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Sandbox, probe_bin};
use serde_json::Value;

use super::{
    common::{bpf_connects, run_in},
    peer_setup::{self, Target},
};
use crate::{interrupt, preflight, report, util};

const SECTION: &str = "xtask bench churn";
/// Upper bound on connections per second and client thread (the count cap).
const MAX_RATE: u64 = 50_000;
/// A connect or greeting slower than this counts as failed.
const TIMEOUT_MS: u64 = 1000;

#[derive(clap::Args, Clone, Debug)]
pub struct ChurnArgs {
    /// Seconds of churn per target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub seconds: u64,
    /// Short run (3 s per target), no BENCHMARKS.md write.
    #[arg(long)]
    pub quick: bool,
    /// Rounds: each runs every target (in a rotated order); the report
    /// shows each target's median round. More rounds, less machine noise.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,
    /// Client threads, each opening connections back to back.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

/// One target's run.
#[derive(Clone, Debug, Default)]
struct Churn {
    ok: u64,
    errors: u64,
    error_kinds: String,
    secs: f64,
    /// nf_conntrack_count and TIME_WAIT sockets in the netns at the end.
    conntrack: u64,
    time_wait: u64,
    /// Connections its mechanism saw (BPF connects, rule matches).
    seen: Option<u64>,
}

impl Churn {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

pub fn churn(a: ChurnArgs) -> Result<()> {
    let seconds = if a.quick { 3 } else { a.seconds };
    if a.write && (a.quick || seconds < 30) {
        bail!("--write records published numbers: use --seconds 30 or more, not --quick");
    }
    preflight::kernel_task(true)?;
    interrupt::install();
    let started = Instant::now();
    let load_before = report::machine_line();
    let mut rounds: Vec<(Target, Vec<Churn>)> = Target::ALL.iter().map(|t| (*t, vec![])).collect();
    for r in 0..a.rounds as usize {
        // Rotated each round, so no target always runs first or last.
        for i in 0..Target::ALL.len() {
            let t = Target::ALL[(r + i) % Target::ALL.len()];
            interrupt::check()?;
            let c = in_own_sandbox(t, seconds, a.parallel).with_context(|| t.short())?;
            println!(
                "round {}/{} {:<9} {:>7.0} conn/s  ok {}  failed {} {}  conntrack {}  TIME_WAIT {}",
                r + 1,
                a.rounds,
                t.short(),
                c.rate(),
                c.ok,
                c.errors,
                c.error_kinds,
                c.conntrack,
                c.time_wait
            );
            rounds[(i + r) % Target::ALL.len()].1.push(c);
        }
    }
    let runs: Vec<(Target, Churn)> = rounds
        .into_iter()
        .map(|(t, mut v)| (t, median_round(&mut v)))
        .collect();
    let machine = report::machine_line();
    let (text, md) = summarize(&runs, seconds, a.rounds, a.parallel, &load_before, &machine);
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        report::write_section(SECTION, &md, &report::today())?;
    }
    Ok(())
}

/// A fresh sandbox with every target set up; churn on `t` only.
fn in_own_sandbox(t: Target, seconds: u64, parallel: u32) -> Result<Churn> {
    let mut sb = Sandbox::new("churn")?;
    let running = peer_setup::start(&mut sb)?;
    let result = churn_on(&sb, t, seconds, parallel);
    let seen = match t {
        Target::L4lb => bpf_connects(&sb).ok(),
        Target::Iptables => peer_setup::netfilter_counts(&sb).ok().map(|c| c.0),
        Target::Nftables => peer_setup::netfilter_counts(&sb).ok().map(|c| c.1),
        _ => None,
    };
    let stopped = running.stop(&mut sb);
    let mut r = result?;
    stopped?;
    r.seen = seen;
    Ok(r)
}

/// The round with the median rate (the lower middle one for an even count).
fn median_round(v: &mut [Churn]) -> Churn {
    v.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    v.get(v.len().saturating_sub(1) / 2)
        .cloned()
        .unwrap_or_default()
}

fn churn_on(sb: &Sandbox, t: Target, seconds: u64, parallel: u32) -> Result<Churn> {
    let addr = t.addr();
    // Warm-up: the path works (and its first-use costs are paid).
    let warm = probe_tcp(sb, &addr, 1, 1, 50)?;
    if warm.ok == 0 {
        bail!(
            "warm-up: no connection to {addr} succeeded: {}",
            warm.error_kinds
        );
    }
    let cap = seconds * MAX_RATE * u64::from(parallel);
    let mut r = probe_tcp(sb, &addr, seconds, parallel, cap)?;
    r.conntrack = netns_file(sb, "/proc/sys/net/netfilter/nf_conntrack_count")?
        .trim()
        .parse()
        .context("nf_conntrack_count")?;
    r.time_wait = time_wait(&netns_file(sb, "/proc/net/sockstat")?).unwrap_or(0);
    Ok(r)
}

/// `l4lb-probe tcp` in the sandbox's cgroup: `parallel` threads back to back
/// for `seconds` (or `n` connections in all).
fn probe_tcp(sb: &Sandbox, addr: &str, seconds: u64, parallel: u32, n: u64) -> Result<Churn> {
    let mut cmd = sb.in_cgroup(probe_bin());
    cmd.args(["tcp", "--to", addr])
        .args(["-n", &n.to_string()])
        .args(["--parallel", &parallel.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--timeout-ms", &TIMEOUT_MS.to_string()]);
    let started = Instant::now();
    // A thread starts no connection after `seconds`; its last one ends
    // within two timeouts (connect, greeting).
    let out = util::stdout_timeout(
        &mut cmd,
        &format!("l4lb-probe tcp --to {addr}"),
        Duration::from_secs(seconds + 30),
    )?;
    let secs = started.elapsed().as_secs_f64();
    let v: Value = serde_json::from_str(out.trim()).with_context(|| format!("probe: {out:?}"))?;
    let ok = v["counts"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    Ok(Churn {
        ok,
        errors: v["errors"].as_u64().unwrap_or(0),
        error_kinds: v["error_kinds"].to_string(),
        secs,
        ..Churn::default()
    })
}

fn netns_file(sb: &Sandbox, path: &str) -> Result<String> {
    run_in(sb.in_netns("cat").arg(path), path)
}

/// The `tw` count of `/proc/net/sockstat`'s TCP line.
fn time_wait(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "tw")?;
    words.next()?.parse().ok()
}

fn summarize(
    runs: &[(Target, Churn)],
    seconds: u64,
    rounds: u32,
    parallel: u32,
    load_before: &str,
    machine: &str,
) -> (String, String) {
    let rate = |t: Target| runs.iter().find(|(x, _)| *x == t).map(|(_, r)| r.rate());
    let direct = rate(Target::Direct).unwrap_or(f64::NAN);
    let header = [
        "target",
        "conn/s",
        "/ direct",
        "failed",
        "failure kinds",
        "conntrack entries at end",
        "TIME_WAIT at end",
        "seen by its mechanism",
    ];
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(t, r)| {
            vec![
                t.label().to_string(),
                format!("{:.0}", r.rate()),
                format!("{:.3}x", r.rate() / direct),
                format!("{}/{}", r.errors, r.ok + r.errors),
                if r.errors == 0 {
                    "-".into()
                } else {
                    r.error_kinds.replace('|', "/")
                },
                r.conntrack.to_string(),
                r.time_wait.to_string(),
                r.seen.map_or("-".into(), |s| s.to_string()),
            ]
        })
        .collect();
    let verdict = verdict(runs);
    let how = format!(
        "{seconds} s per target and round, {rounds} round(s) (each target's median round shown), \
         {parallel} client threads back to back, each run in a fresh sandbox"
    );
    let text = format!(
        "new TCP connections under conntrack ({how})\n{}{verdict}\nmachine before: {load_before}\nmachine after:  {machine}\n",
        report::table(&header, &rows)
    );
    let md = format!(
        "## Connection churn: l4lb next to iptables, nftables and HAProxy\n\n\
         `cargo xtask bench churn --seconds {seconds} --rounds {rounds} --parallel {parallel}` on {{date}}: {how}. \
         Each sandbox (private netns with only `lo`, the client in the agent's child cgroup) holds the \
         backend (`l4lb-testsrv` on {b}) and all five ways to it, as in `bench peers` (so NAT tables exist and \
         conntrack tracks every connection, direct and l4lb included); the kernel's default sysctls \
         (`tcp_tw_reuse` = 2: loopback only, ports 32768-60999, conntrack's 120 s TIME_WAIT). The client \
         (`l4lb-probe tcp`) connects, reads the greeting and closes (FIN, so the client side keeps \
         TIME_WAIT); a connect or greeting slower than {TIMEOUT_MS} ms fails. conn/s counts the connections that \
         succeeded over the run's wall time.\n\n{}\n{verdict}\n\n\
         Setup: {setup}. \"seen by its mechanism\" is the BPF connect counter for l4lb and the rule's counter \
         for iptables and nftables (warm-up included).\n\nMachine: {machine} (before the run: {load_before}).\n",
        report::md_table(&header, &rows),
        b = peer_setup::BACKEND,
        setup = peer_setup::setup_text(),
    );
    (text, md)
}

/// l4lb's rate next to each peer's, and the failures.
fn verdict(runs: &[(Target, Churn)]) -> String {
    let get = |t: Target| runs.iter().find(|(x, _)| *x == t).map(|(_, r)| r);
    let Some(l4) = get(Target::L4lb) else {
        return "l4lb did not run.".into();
    };
    let parts: Vec<String> = [Target::Iptables, Target::Nftables, Target::Haproxy]
        .iter()
        .filter_map(|&t| get(t).map(|r| (t, r)))
        .map(|(t, r)| {
            format!(
                "{:.2}x {}'s conn/s ({} vs {} failed)",
                l4.rate() / r.rate().max(1e-9),
                t.short(),
                l4.errors,
                r.errors
            )
        })
        .collect();
    let direct = get(Target::Direct).map_or(f64::NAN, Churn::rate);
    format!(
        "l4lb: {:.3}x direct's conn/s; {}.",
        l4.rate() / direct,
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_time_wait() {
        let s =
            "sockets: used 5\nTCP: inuse 3 orphan 0 tw 27123 alloc 4 mem 1\nUDP: inuse 0 mem 0\n";
        assert_eq!(time_wait(s), Some(27123));
        assert_eq!(time_wait("TCP: inuse 3\n"), None);
    }

    #[test]
    fn verdict_names_every_peer() {
        let r = |ok, errors| Churn {
            ok,
            errors,
            secs: 1.0,
            ..Churn::default()
        };
        let runs = [
            (Target::Direct, r(1000, 0)),
            (Target::L4lb, r(900, 0)),
            (Target::Iptables, r(450, 12)),
            (Target::Nftables, r(600, 0)),
            (Target::Haproxy, r(300, 0)),
        ];
        let v = verdict(&runs);
        assert!(v.starts_with("l4lb: 0.900x direct's conn/s;"), "{v}");
        assert!(
            v.contains("2.00x iptables's conn/s (0 vs 12 failed)"),
            "{v}"
        );
        assert!(
            v.contains("1.50x nftables") && v.contains("3.00x HAProxy"),
            "{v}"
        );
        let (text, md) = summarize(&runs, 5, 1, 2, "load 1", "load 2");
        assert!(
            text.contains("0.450x") && md.contains("--seconds 5 --rounds 1 --parallel 2"),
            "{md}"
        );
    }

    #[test]
    fn median_round_by_rate() {
        let r = |ok| Churn {
            ok,
            secs: 1.0,
            ..Churn::default()
        };
        assert_eq!(median_round(&mut [r(3), r(1), r(2)]).ok, 2);
        assert_eq!(median_round(&mut [r(4), r(1)]).ok, 1);
        assert_eq!(median_round(&mut []).ok, 0);
    }
}
