//! `cargo xtask bench xdp-cpu`: the node's CPU time per forwarded packet at a
//! fixed offered rate below saturation, l4lb XDP next to iptables and nftables
//! DNAT (issue 16, goal 5: l4lb ≤ 0.5x iptables).
//!
//! The same three-namespace topology and sender/sink as `bench xdp`, but the
//! sender is paced (`pktgen --rate`), so every mode forwards the same packets
//! and what differs is the CPU the kernel spends on each. That CPU is softirq
//! time (veth NAPI, the node's XDP program or its skb stack and netfilter, the
//! sink's XDP drop), read machine-wide from /proc/stat over the flood, minus
//! the softirq time of an equal stretch with no flood just before it (other
//! load on the box). The sink's drop is the same in every mode; plain
//! forwarding without NAT is the floor.
//!
//! Safety: as `bench xdp`: every flood is bounded by time and count and runs in
//! the topology's own namespaces, where the netfilter rules live and go.
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::{
    stats::{med_range_if_many, median},
    xdp::{Flood, Mode, measure},
};
use crate::{interrupt, preflight, report};

const SECTION: &str = "xtask bench xdp-cpu";
const GOAL: f64 = 0.5;
const MODES: [Mode; 6] = [
    Mode::Forward,
    Mode::L4lb,
    Mode::L4lbFib,
    Mode::L4lbDsr,
    Mode::Iptables,
    Mode::Nftables,
];
pub const MAX_ROUNDS: u32 = 10;
pub const MAX_SECONDS: u32 = 30;

#[derive(clap::Args, Clone, Debug)]
pub struct XdpCpuArgs {
    /// Frames per second offered (below what every mode forwards here, ~300k).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1_000..=1_000_000))]
    pub rate: u64,
    /// Rounds (modes interleave within each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS as i64))]
    pub rounds: u32,
    /// Seconds of flood per mode and round (and as many idle just before).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=MAX_SECONDS as i64))]
    pub seconds: u32,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

/// Per packet: softirq ns above the idle stretch.
#[derive(Clone, Copy)]
struct PerPacket {
    softirq_ns: f64,
    delivered_share: f64,
    sent_pps: f64,
}

impl PerPacket {
    fn of(f: &Flood) -> PerPacket {
        let scale = f.cpu.wall_s / f.idle_cpu.wall_s.max(1e-9);
        let over = |flood: f64, idle: f64| (flood - idle * scale).max(0.0);
        let n = f.delivered.max(1) as f64;
        PerPacket {
            softirq_ns: over(f.cpu.softirq_s, f.idle_cpu.softirq_s) / n * 1e9,
            delivered_share: f.delivered as f64 / f.sent.max(1) as f64,
            sent_pps: f.sent as f64 / f.seconds.max(1e-9),
        }
    }
}

pub fn xdp_cpu(a: XdpCpuArgs) -> Result<()> {
    if a.write && a.rounds < 3 {
        bail!("--write records published numbers: use at least 3 rounds");
    }
    preflight::kernel_task(true)?;
    interrupt::install();
    let started = Instant::now();
    let mut runs: Vec<(Mode, Vec<PerPacket>)> = MODES.iter().map(|m| (*m, Vec::new())).collect();
    for r in 0..a.rounds {
        // Rotate the order so drift in the machine's load spreads over every mode.
        let n = runs.len();
        for i in 0..n {
            interrupt::check()?;
            let (mode, samples) = &mut runs[(i + r as usize) % n];
            let f = measure(*mode, a.seconds, a.rate)
                .with_context(|| format!("round {} {mode:?}", r + 1))?;
            let p = PerPacket::of(&f);
            println!(
                "round {}/{} {:<9} {:>8.0} pps sent, {:>8.0} delivered ({:.1} %), softirq {:>6.0} ns/packet",
                r + 1,
                a.rounds,
                format!("{mode:?}"),
                f.sent as f64 / f.seconds,
                f.pps(),
                p.delivered_share * 100.0,
                p.softirq_ns
            );
            samples.push(p);
        }
    }
    let (text, markdown) = summarize(&a, &runs, &report::machine_line());
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        report::write_section(SECTION, &markdown, &report::utc_date()?)?;
    }
    Ok(())
}

fn field(v: &[PerPacket], f: impl Fn(&PerPacket) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

fn summarize(a: &XdpCpuArgs, runs: &[(Mode, Vec<PerPacket>)], machine: &str) -> (String, String) {
    let softirq = |m: Mode| {
        runs.iter()
            .find(|(x, _)| *x == m)
            .map(|(_, v)| median(&field(v, |p| p.softirq_ns)))
            .unwrap_or(f64::NAN)
    };
    let ipt = softirq(Mode::Iptables);
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|(m, v)| {
            let s = field(v, |p| p.softirq_ns);
            vec![
                m.label().to_string(),
                med_range_if_many(&s, 0),
                format!("{:.2}x", median(&s) / ipt),
                format!("{:.1} %", median(&field(v, |p| p.delivered_share)) * 100.0),
            ]
        })
        .collect();
    let (native, fib) = (softirq(Mode::L4lb) / ipt, softirq(Mode::L4lbFib) / ipt);
    let best = native.min(fib);
    let verdict = format!(
        "l4lb XDP / iptables DNAT, softirq CPU per forwarded packet = {native:.2}x (native, kernel forwarding), {fib:.2}x (native, --xdp-forward fib) (goal <= {GOAL:.1}x): {}",
        if best <= GOAL { "met" } else { "NOT met" }
    );
    let all: Vec<PerPacket> = runs.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    let sent = median(&field(&all, |p| p.sent_pps));
    let header = [
        "node datapath",
        "softirq ns/packet",
        "vs iptables",
        "delivered",
    ];
    let text = format!("{}{verdict}\n{machine}\n", report::table(&header, &rows));
    let markdown = format!(
        "## XDP datapath: the node's CPU per forwarded packet\n\n\
         `cargo xtask bench xdp-cpu --rate {} --rounds {} --seconds {}` on {{date}}: medians (min-max) over \
         rounds, modes interleaved in a rotating order, each in a fresh topology.\n\n\
         The topology and the sender/sink of `bench xdp` (client — veth — node — veth — backends; \
         `l4lb-agent pktgen` 60-byte UDP frames over 64 flows, pinned to CPU 0; `pktsink` XDP-drops them \
         on b0), but the sender is paced at {} frames/s (it reached a median {sent:.0}: each call of the \
         program has a setup gap), below what every mode forwards on this box, so each forwards the \
         same packets. softirq ns/packet = the machine's softirq time during the flood \
         (/proc/stat, both CPUs: veth NAPI, the node's XDP program or its skb path with netfilter, the \
         sink's drop) minus that of an equal idle stretch just before, over the packets delivered. Plain forwarding \
         without NAT is the kernel's floor; the sink's drop is in every row. The sender's own time is \
         system time, not softirq, and is not counted.\n\n{}\n{verdict}.\n\n\
         The kernel accounts CPU time by tick here (250 Hz, no IRQ time accounting), so each figure is \
         sampled: a 5 s flood at 100k frames/s gives a few hundred samples of softirq.\n\n\
         Machine: {machine}.\n",
        a.rate,
        a.rounds,
        a.seconds,
        a.rate,
        report::md_table(&header, &rows),
    );
    (text, markdown)
}
