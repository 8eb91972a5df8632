//! `cargo xtask bench socket`: what the connect4 rewrite costs. A probe in the
//! sandbox cgroup opens N TCP connections per round, alternately straight to
//! the backend and to a VIP that the agent's program rewrites to it; the
//! medians over rounds are compared (goal: VIP/direct <= 1.03x).
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use l4lb_tests::{Agent, Sandbox};

use super::{
    bpf_stats,
    common::run_in,
    paired::{OverRounds, median_diff_us},
    stats::median,
};
use crate::{
    interrupt, preflight,
    probe::{self, Lat},
    report,
};

const BACKEND: &str = "127.0.0.2:7000";
const VIP: &str = "11.0.0.9:7000";
const GOAL: f64 = 1.03;
/// Upper bounds so that no flag combination runs away.
pub(super) const MAX_ITERATIONS: u32 = 200_000;
pub(super) const MAX_ROUNDS: u32 = 50;
const PROBE_TIMEOUT: Duration = Duration::from_secs(180);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const SECTION: &str = "xtask bench socket";

pub fn socket(
    iterations: u32,
    rounds: u32,
    write: bool,
    conntrack: bool,
    lb_policy: &str,
    release: bool,
) -> Result<()> {
    if write && (rounds < 5 || !release || conntrack) {
        bail!(
            "--write records published numbers: use at least 5 rounds and release binaries, without --conntrack"
        );
    }
    // Release binaries: a debug probe would add its own overhead to both sides.
    preflight::kernel_task(release)?;
    interrupt::install();
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    let mut sb = Sandbox::new("bench")?;
    if conntrack {
        conntrack_on(&sb)?;
    }
    let (direct, vip) = measure(&mut sb, iterations, rounds, deadline, lb_policy)?;
    drop(sb);

    let (text, markdown) = summarize(&direct, &vip, iterations, rounds, &report::machine_line());
    print!("\n{text}");
    if write {
        report::write_section(SECTION, &markdown, &report::utc_date()?)?;
    }
    Ok(())
}

/// An empty NAT chain on output in the sandbox's netns (it goes with the
/// netns): its hook makes conntrack track every connection there.
fn conntrack_on(sb: &Sandbox) -> Result<()> {
    let rules = sb.workdir().join("conntrack.nft");
    std::fs::write(
        &rules,
        "table ip l4lb_ct {\n  chain out {\n    type nat hook output priority -100; policy accept;\n  }\n}\n",
    )?;
    run_in(sb.in_netns("nft").arg("-f").arg(&rules), "nft -f")?;
    println!("conntrack on: an empty nat output chain in {}", sb.netns());
    Ok(())
}

/// The result as terminal text and as a BENCHMARKS.md section body (with a
/// `{date}` placeholder).
fn summarize(
    direct: &[Lat],
    vip: &[Lat],
    iterations: u32,
    rounds: u32,
    machine: &str,
) -> (String, String) {
    let (d, v) = (medians(direct), medians(vip));
    let fmt = |p: &Lat| {
        vec![
            format!("{:.1}", p.p50_us),
            format!("{:.1}", p.p99_us),
            format!("{:.1}", p.mean_us),
            format!("{:.0}", p.conns_per_sec),
        ]
    };
    let ratio = |a: f64, b: f64| format!("{:.3}x", a / b);
    let header = ["path", "p50 us", "p99 us", "mean us", "conn/s"];
    let rows = vec![
        [vec![format!("direct {BACKEND}")], fmt(&d)].concat(),
        [vec![format!("VIP {VIP}")], fmt(&v)].concat(),
        vec![
            "VIP/direct".into(),
            ratio(v.p50_us, d.p50_us),
            ratio(v.p99_us, d.p99_us),
            ratio(v.mean_us, d.mean_us),
            ratio(v.conns_per_sec, d.conns_per_sec),
        ],
    ];
    let p50_ratio = v.p50_us / d.p50_us;
    let verdict = format!(
        "p50 VIP/direct = {p50_ratio:.3}x (goal <= {GOAL:.2}x): {}",
        if p50_ratio <= GOAL { "met" } else { "NOT met" }
    );
    // Round-to-round spread: a VIP/direct difference inside it is noise.
    let range = |runs: &[Lat]| {
        let lo = runs.iter().map(|p| p.p50_us).fold(f64::INFINITY, f64::min);
        let hi = runs
            .iter()
            .map(|p| p.p50_us)
            .fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.1}-{hi:.1} us")
    };
    let noise = format!(
        "p50 range over rounds: direct {}, VIP {}",
        range(direct),
        range(vip)
    );
    let how = format!("medians of {rounds} rounds x {iterations} connections per path");
    let paired = paired_line(direct, vip);

    let text = format!(
        "TCP connect() through the cgroup connect4 rewrite ({how})\n{}{verdict}\n{noise}\n{paired}\n{machine}\n",
        report::table(&header, &rows)
    );
    let markdown = format!(
        "## Socket path: connect() direct vs VIP\n\n\
         `cargo xtask bench socket --iterations {iterations} --rounds {rounds}` on {{date}}, {how}. \
         Probe (`l4lb-probe latency --rst`) and backend (`l4lb-testsrv`) in one netns, the probe in the \
         agent's cgroup; each round interleaves direct and VIP connection by connection, the two taking \
         turns at going first.\n\n\
         {}\n{verdict}; {noise}.\n\n{paired}\n\nMachine: {machine}.\n",
        report::md_table(&header, &rows)
    );
    (text, markdown)
}

/// VIP − direct per cycle (wall, the probe thread's CPU, and the rest:
/// waiting), per round's median, then the median (min to max) over rounds.
fn paired_line(direct: &[Lat], vip: &[Lat]) -> String {
    let per_round = |f: fn(&Lat) -> &[u64]| -> Vec<f64> {
        vip.iter()
            .zip(direct)
            .map(|(v, d)| median_diff_us(f(v), f(d)))
            .collect()
    };
    let (wall, cpu) = (per_round(|l| &l.wall_ns), per_round(|l| &l.cpu_ns));
    let wait: Vec<f64> = wall.iter().zip(&cpu).map(|(w, c)| w - c).collect();
    format!(
        "Paired per cycle, VIP - direct in µs (per round the median over cycles, then the median (min to max) \
         over rounds): wall {}, the probe thread's CPU {} (syscalls, the BPF hooks, the loopback softirqs \
         run in its context), waiting (wall - CPU) {}.",
        OverRounds::of(&wall).signed(1),
        OverRounds::of(&cpu).signed(1),
        OverRounds::of(&wait).signed(1)
    )
}

/// Runs the rounds; returns (direct, VIP) results. The agent is stopped
/// (and torn down) before this returns, also on error.
fn measure(
    sb: &mut Sandbox,
    iterations: u32,
    rounds: u32,
    deadline: Instant,
    lb_policy: &str,
) -> Result<(Vec<Lat>, Vec<Lat>)> {
    sb.spawn_testsrv("b1", &[BACKEND], &[])?;
    let yaml = format!("vips:\n  - vip: {VIP}\n    protocol: tcp\n    backends: [\"{BACKEND}\"]\n");
    let mut agent = Agent::start_with_args(sb, &yaml, &["--lb-policy", lb_policy])?;
    println!("agent --lb-policy {lb_policy}");
    let result = measure_with(sb, &agent, iterations, rounds, deadline);
    // Explicit stop (SIGTERM + teardown) so a failed run does not report twice.
    let stopped = agent.stop();
    let runs = result?;
    stopped?;
    Ok(runs)
}

fn measure_with(
    sb: &Sandbox,
    agent: &Agent,
    iterations: u32,
    rounds: u32,
    deadline: Instant,
) -> Result<(Vec<Lat>, Vec<Lat>)> {
    agent.wait_vips(1, Duration::from_secs(30))?;
    println!(
        "sandbox {}: testsrv b1 on {BACKEND}, agent with VIP {VIP} -> {BACKEND}",
        sb.netns()
    );

    // Warm-up (not counted): page cache, CPU frequency, the VIP path works.
    let warm = iterations.min(1000);
    for to in [BACKEND, VIP] {
        probe(sb, &[to], warm, deadline).with_context(|| format!("warm-up probe to {to}"))?;
    }

    let (mut direct, mut vip) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // One probe per round alternates direct and VIP connection by
        // connection, so machine noise (2 shared cores) hits both alike.
        let (d, v) = probe_pair(sb, iterations, deadline)?;
        for (label, p) in [("direct", &d), ("VIP   ", &v)] {
            println!(
                "round {}/{rounds} {label}: p50 {:.1} us  p99 {:.1} us  mean {:.1} us  {:.0} conn/s",
                r + 1,
                p.p50_us,
                p.p99_us,
                p.mean_us,
                p.conns_per_sec
            );
        }
        direct.push(d);
        vip.push(v);
    }

    // The BPF counters prove the VIP rounds went through the rewrite (read
    // before the cost runs below add connects of their own).
    if let Ok(v) = agent.vips_json() {
        let connects: u64 = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["connects"].as_u64())
            .sum();
        let made = u64::from(rounds) * u64::from(iterations)
            + u64::from(warm)
            + u64::from(rounds + 1) * u64::from(probe::WARMUP);
        // (warm-up probes of the pairs count too: probe::WARMUP per round)
        println!("BPF counted {connects} connects to the VIP (the probe made {made})");
    }
    program_costs(sb, iterations, deadline);
    Ok((direct, vip))
}

/// Runs of each target in the cost measurement: direct and VIP take turns
/// chunk by chunk, so a change of the machine's load during the measurement
/// hits both alike (one run each, back to back, moved the direct connect4 of
/// the same code 126-532 ns between benches at load 6).
const COST_CHUNKS: u32 = 6;

/// The programs' own run time (the kernel's accounting) for connects to
/// the backend directly and to the VIP, each target's connects in probe
/// runs of its own, the two alternating ([`COST_CHUNKS`]); printed, not
/// part of the verdict (the connect latency above is).
fn program_costs(sb: &Sandbox, iterations: u32, deadline: Instant) {
    let Ok(_on) = bpf_stats::enable() else {
        println!("BPF run-time stats unavailable (BPF_ENABLE_STATS refused)");
        return;
    };
    let targets = [BACKEND, VIP];
    let per_run = iterations.div_ceil(COST_CHUNKS).max(1);
    let mut sums: [Vec<bpf_stats::ProgCost>; 2] = [Vec::new(), Vec::new()];
    let mut connects = [0u64; 2];
    for chunk in 0..COST_CHUNKS {
        for k in 0..2 {
            // Each target goes first in every other chunk.
            let t = (k + chunk as usize) % 2;
            match cost_run(sb, targets[t], per_run, deadline) {
                Ok(d) => {
                    sums[t] = bpf_stats::sum(&sums[t], &d);
                    connects[t] += u64::from(per_run + probe::WARMUP);
                }
                Err(e) => {
                    println!(
                        "BPF run time, connects to {}: unavailable ({e:#})",
                        targets[t]
                    );
                    return;
                }
            }
        }
    }
    for (t, to) in targets.iter().enumerate() {
        println!(
            "BPF run time, connects to {to}: {}",
            bpf_stats::describe(&sums[t], connects[t])
        );
    }
}

/// The programs' run time over one probe run of `n` connects to `to`.
fn cost_run(sb: &Sandbox, to: &str, n: u32, deadline: Instant) -> Result<Vec<bpf_stats::ProgCost>> {
    let before = bpf_stats::pinned_program_costs(sb.pin_root())?;
    probe(sb, &[to], n, deadline)?;
    Ok(bpf_stats::delta(
        &before,
        &bpf_stats::pinned_program_costs(sb.pin_root())?,
    ))
}

/// One probe run over `to` (interleaved), one result per target. Fails on
/// any failed connect: latencies of a run with failed connects would not
/// compare like for like.
fn probe(sb: &Sandbox, to: &[&str], n: u32, deadline: Instant) -> Result<Vec<Lat>> {
    checked(probe::latency(sb, to, n, PROBE_TIMEOUT, deadline)?)
}

fn checked(lats: Vec<Lat>) -> Result<Vec<Lat>> {
    if let Some(l) = lats.iter().find(|l| l.errors > 0) {
        bail!(
            "l4lb-probe latency --to {}: {} ok, {} errors: {}",
            l.to,
            l.ok,
            l.errors,
            l.error_kinds
        );
    }
    Ok(lats)
}

/// Direct and VIP interleaved in one probe run, taking turns at going first
/// (`--rotate 2`: neither always follows the other), with each cycle's wall
/// and CPU time for the paired statistics.
fn probe_pair(sb: &Sandbox, n: u32, deadline: Instant) -> Result<(Lat, Lat)> {
    let lats = probe::latency_per_conn(sb, &[BACKEND, VIP], n, 2, PROBE_TIMEOUT, deadline)?;
    let [d, v]: [Lat; 2] = checked(lats)?
        .try_into()
        .map_err(|t: Vec<Lat>| anyhow!("no targets pair: {t:?}"))?;
    Ok((d, v))
}

/// Per-field medians over rounds; ok and errors summed.
fn medians(runs: &[Lat]) -> Lat {
    let m = |f: fn(&Lat) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    Lat {
        p50_us: m(|p| p.p50_us),
        p99_us: m(|p| p.p99_us),
        mean_us: m(|p| p.mean_us),
        conns_per_sec: m(|p| p.conns_per_sec),
        ok: runs.iter().map(|p| p.ok).sum(),
        errors: runs.iter().map(|p| p.errors).sum(),
        ..Lat::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even() {
        let p = |x: f64| Lat {
            p50_us: x,
            p99_us: x,
            mean_us: x,
            conns_per_sec: x,
            ok: 1,
            ..Lat::default()
        };
        assert_eq!(medians(&[p(3.0), p(1.0), p(2.0)]).p50_us, 2.0);
        assert_eq!(medians(&[p(4.0), p(1.0), p(2.0), p(3.0)]).p99_us, 2.5);
    }

    #[test]
    fn summary_ratio_and_verdict() {
        let p = |x: f64| Lat {
            p50_us: x,
            p99_us: 2.0 * x,
            mean_us: x,
            conns_per_sec: 1e6 / x,
            ok: 1,
            ..Lat::default()
        };
        let (text, md) = summarize(
            &[p(100.0), p(104.0)],
            &[p(102.0), p(102.0)],
            10,
            2,
            "nproc: 2",
        );
        assert!(
            text.contains("p50 VIP/direct = 1.000x (goal <= 1.03x): met"),
            "{text}"
        );
        assert!(
            text.contains("direct 100.0-104.0 us, VIP 102.0-102.0 us"),
            "{text}"
        );
        assert!(
            md.contains("| VIP/direct | 1.000x |") && md.contains("on {date},"),
            "{md}"
        );
        let (text, _) = summarize(&[p(100.0)], &[p(110.0)], 10, 1, "");
        assert!(text.contains("1.100x (goal <= 1.03x): NOT met"), "{text}");
    }

    #[test]
    fn the_paired_line_splits_wall_into_cpu_and_waiting() {
        let run = |wall: Vec<u64>, cpu: Vec<u64>| Lat {
            wall_ns: wall,
            cpu_ns: cpu,
            ..Lat::default()
        };
        // Round 1: VIP +3 us wall, +2 us CPU; round 2: +5 wall, +2 CPU.
        let direct = [
            run(vec![100_000, 110_000, 0], vec![40_000, 41_000, 0]),
            run(
                vec![100_000, 100_000, 100_000],
                vec![40_000, 40_000, 40_000],
            ),
        ];
        let vip = [
            run(vec![103_000, 113_000, 90_000], vec![42_000, 43_000, 1]),
            run(
                vec![105_000, 105_000, 105_000],
                vec![42_000, 42_000, 42_000],
            ),
        ];
        let line = paired_line(&direct, &vip);
        assert!(
            line.contains("wall +4.0 (+3.0 to +5.0), the probe thread's CPU +2.0 (+2.0 to +2.0)")
                && line.contains("waiting (wall - CPU) +2.0 (+1.0 to +3.0)."),
            "{line}"
        );
    }
}
