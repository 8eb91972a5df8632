//! `cargo xtask bench xdp`: what the XDP datapath costs and how it compares.
//!
//! 1. ns per packet through the program (BPF_PROG_TEST_RUN with `repeat`,
//!    `xdp_cost.rs`): an established flow (connection-table hit, counters),
//!    a new flow's lookups (explain mode: Maglev pick, no map writes), a
//!    non-VIP packet and one to a VIP address's other port. Goal <= 50 ns.
//! 2. Packets per second through the `node` netns of the three-namespace
//!    topology: UDP frames from `client` (`l4lb-agent pktgen`: an XDP program
//!    run through BPF_PROG_TEST_RUN in live-frames mode, 64 flows; a
//!    user-space sender could not outrun the node) to a VIP whose one backend
//!    is `l4lb-agent pktsink` (native XDP drop on b0); the veth's drop count
//!    over the sender's duration is the rate.
//!    Modes, interleaved round by round, each in a fresh topology (a NAT
//!    table once loaded keeps conntrack in the netns' path): plain forwarding
//!    to the backend address (no NAT, the ceiling), l4lb XDP (native,
//!    generic, each with `--xdp-forward fib`, and native with `--xdp-dsr l2`:
//!    the frame leaves with only its MACs changed), iptables (legacy xtables)
//!    DNAT, nftables DNAT. Goal: l4lb >= 2x iptables. The flood is one-way,
//!    so DSR's main gain (no reply crosses the node) is not in these numbers:
//!    `tests/tests/xdp_dsr.rs` checks that part.
//!
//! Every flood is bounded by count and time and runs inside the client netns,
//! whose only route is the node; iptables/nft rules exist only in the
//! topology's own namespaces and go with them.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{
    Agent, Topology, agent_bin,
    topology::{CLIENT_IP4, NODE_IN},
};
use serde_json::Value;

use super::{
    procfs::CpuDelta,
    stats::median,
    xdp_cost::{self, REPEAT},
};
use crate::{interrupt, preflight, report, util};

const SECTION: &str = "xtask bench xdp";
const VIP: &str = "11.0.0.50";
const BACKEND: &str = "198.18.2.2";
const PORT: &str = "9";
const FLOWS: &str = "64";
/// Upper bound on frames per send (the time bound usually ends it first).
const FLOOD_MAX: &str = "200000000";
const NS_GOAL: f64 = 50.0;
const RATIO_GOAL: f64 = 2.0;
pub const MAX_ROUNDS: u32 = 10;
pub const MAX_SECONDS: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Forward,
    L4lb,
    L4lbGeneric,
    L4lbFib,
    L4lbGenericFib,
    Iptables,
    Nftables,
    L4lbDsr,
}

impl Mode {
    const ALL: [Mode; 8] = [
        Mode::Forward,
        Mode::L4lb,
        Mode::L4lbGeneric,
        Mode::L4lbFib,
        Mode::L4lbGenericFib,
        Mode::L4lbDsr,
        Mode::Iptables,
        Mode::Nftables,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            Mode::Forward => "plain forwarding (no NAT, to the backend address)",
            Mode::L4lb => "l4lb XDP, native mode (on the node's ingress veth)",
            Mode::L4lbGeneric => "l4lb XDP, generic (skb) mode",
            Mode::L4lbFib => "l4lb XDP, native, --xdp-forward fib (redirect, no node stack)",
            Mode::L4lbGenericFib => "l4lb XDP, generic, --xdp-forward fib",
            Mode::L4lbDsr => {
                "l4lb XDP, native, --xdp-dsr l2 (MAC rewrite + redirect, IP untouched)"
            }
            Mode::Iptables => "iptables DNAT (legacy xtables, PREROUTING)",
            Mode::Nftables => "nftables DNAT (prerouting dstnat)",
        }
    }
}

fn yaml() -> String {
    format!(
        "vips:\n  - vip: {VIP}:{PORT}\n    protocol: udp\n    backends: [\"{BACKEND}:{PORT}\"]\n  - vip: {VIP}:80\n    protocol: tcp\n    backends: [\"{BACKEND}:8080\"]\n"
    )
}

/// `rounds` 0: the per-packet costs only (`--cost-only`).
pub fn run(rounds: u32, seconds: u32, write: bool) -> Result<()> {
    if write && rounds < 3 {
        bail!("--write records published numbers: use at least 3 rounds");
    }
    // The costs run the program in-process: only the floods need release binaries.
    preflight::kernel_task(rounds > 0)?;
    interrupt::install();
    let started = Instant::now();

    let costs = xdp_cost::per_packet()?;
    for (what, ns) in &costs {
        println!("per packet: {what}: {ns} ns");
    }
    if rounds == 0 {
        return Ok(()); // --cost-only
    }

    let mut pps: Vec<(Mode, Vec<f64>)> = Mode::ALL.iter().map(|m| (*m, Vec::new())).collect();
    for r in 0..rounds {
        for (mode, runs) in pps.iter_mut() {
            interrupt::check()?;
            let rate = measure(*mode, seconds, 0)
                .with_context(|| format!("round {} {mode:?}", r + 1))?
                .pps();
            println!(
                "round {}/{rounds} {:<9} {:>10.0} pps",
                r + 1,
                format!("{mode:?}"),
                rate
            );
            runs.push(rate);
        }
    }
    let (text, markdown) = summarize(&costs, &pps, rounds, seconds, &report::machine_line());
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if write {
        report::write_section(SECTION, &markdown, &report::utc_date()?)?;
    }
    Ok(())
}

/// One measured flood: what reached the backend and the machine's CPU time
/// meanwhile, next to the same time with no flood just before it.
pub(super) struct Flood {
    pub sent: u64,
    pub delivered: u64,
    pub seconds: f64,
    pub cpu: CpuDelta,
    pub idle_cpu: CpuDelta,
}

impl Flood {
    pub(super) fn pps(&self) -> f64 {
        self.delivered as f64 / self.seconds
    }
}

/// One flood through a fresh topology in `mode`, offering `rate` frames per
/// second (0: as many as the sender can).
pub(super) fn measure(mode: Mode, seconds: u32, rate: u64) -> Result<Flood> {
    let mut t = Topology::new("bxdp")?;
    // The backend: every frame dropped in b0's driver (native XDP), counted by
    // the veth; the same small cost after every node datapath.
    let mut sink = Sink::start(&t, seconds)?;
    // The sender's frames arrive on n0 as XDP frames: a veth takes them only
    // into NAPI, which an XDP program in native mode or GRO turns on.
    t.in_node("ethtool", &["-K", NODE_IN, "gro", "on"])?;
    // The sender runs on CPU 0, where veth NAPI runs the receive work its
    // frames cause; RPS hands the skb work of n0 (the node's stack, where
    // there is one) to CPU 1. (`ip netns exec` remounts /sys for the netns,
    // where n0's queues are.) Threaded NAPI, or no RPS, starves the node.
    let rps = format!("echo 2 > /sys/class/net/{NODE_IN}/queues/rx-0/rps_cpus");
    util::run(Command::new("ip").args(["netns", "exec", t.node.netns(), "sh", "-c", &rps]))?;
    let dnat = format!("{BACKEND}:{PORT}");
    let mut agent = None;
    let target = match mode {
        Mode::Forward => {
            // The topology routes only the VIP ranges via the node; add the backends' subnet.
            let route = [
                "-n",
                t.client.netns(),
                "route",
                "add",
                "198.18.2.0/24",
                "via",
                "198.18.1.1",
            ];
            util::run(Command::new("ip").args(route))?;
            BACKEND
        }
        Mode::L4lb | Mode::L4lbGeneric | Mode::L4lbFib | Mode::L4lbGenericFib | Mode::L4lbDsr => {
            let xdp_mode = match mode {
                Mode::L4lb | Mode::L4lbFib | Mode::L4lbDsr => "native",
                _ => "generic",
            };
            let dsr = if mode == Mode::L4lbDsr { "l2" } else { "off" };
            let forward = match mode {
                Mode::L4lbFib | Mode::L4lbGenericFib => "fib",
                _ => "kernel",
            };
            let args = [
                "--xdp-iface",
                NODE_IN,
                "--xdp-mode",
                xdp_mode,
                "--xdp-forward",
                forward,
                "--xdp-dsr",
                dsr,
            ];
            let a = Agent::start_with_args(&mut t.node, &yaml(), &args)?;
            a.wait_vips(2, Duration::from_secs(30))?;
            agent = Some(a);
            VIP
        }
        Mode::Iptables => {
            t.in_node(
                "iptables-legacy",
                &[
                    "-t",
                    "nat",
                    "-A",
                    "PREROUTING",
                    "-d",
                    VIP,
                    "-p",
                    "udp",
                    "--dport",
                    PORT,
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &dnat,
                ],
            )?;
            VIP
        }
        Mode::Nftables => {
            let rules = format!(
                "table ip l4lb_bench {{ chain pre {{ type nat hook prerouting priority dstnat; policy accept; ip daddr {VIP} udp dport {PORT} dnat to {dnat}; }}; }}"
            );
            util::run(t.node.in_netns("nft").arg(&rules))?;
            VIP
        }
    };
    // A short warm-up (ARP, conntrack entries, caches), then the measured flood.
    let macs = (t.client.mac("c0")?, t.node.mac(NODE_IN)?);
    flood(&t, &macs, target, 0.3, rate)?;
    let idle_cpu = if rate > 0 {
        CpuDelta::over(|| std::thread::sleep(Duration::from_secs(seconds.into())))?.0
    } else {
        CpuDelta::default()
    };
    let before = t.backends.xdp_drops("b0")?;
    let (cpu, sent) = CpuDelta::over(|| flood(&t, &macs, target, f64::from(seconds), rate))?;
    let sent = sent?;
    let after = t.backends.xdp_drops("b0")?;
    let elapsed = sent["seconds"]
        .as_f64()
        .context("flood printed no seconds")?;
    let sent_n = sent["sent"].as_u64().unwrap_or(0);
    let got = after.saturating_sub(before);
    if got == 0 {
        bail!("{mode:?}: nothing reached the backend (flood: {sent})");
    }
    if got < sent_n / 2 {
        println!("  note: {mode:?}: {got} of {sent_n} datagrams reached the backend");
    }
    if let Some(mut a) = agent {
        a.stop()?;
    }
    sink.stop();
    Ok(Flood {
        sent: sent_n,
        delivered: got,
        seconds: elapsed,
        cpu,
        idle_cpu,
    })
}

/// `l4lb-agent pktgen` from c0 to n0 (pinned to CPU 0) for `seconds`.
fn flood(
    t: &Topology,
    macs: &(String, String),
    target: &str,
    seconds: f64,
    rate: u64,
) -> Result<Value> {
    let to = format!("{target}:{PORT}");
    let mut cmd = t.client.in_netns("taskset");
    cmd.args(["-c", "0"]).arg(agent_bin()).arg("pktgen");
    cmd.args(["--iface", "c0", "--src-mac", &macs.0, "--dst-mac", &macs.1])
        .args([
            "--src", CLIENT_IP4, "--dst", &to, "--flows", FLOWS, "--frames", FLOOD_MAX,
        ])
        .args([
            "--seconds",
            &format!("{seconds}"),
            "--rate",
            &rate.to_string(),
        ]);
    let out = util::output_timeout(&mut cmd, Duration::from_secs_f64(seconds + 30.0))?;
    if !out.status.success() {
        bail!("flood failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(s.trim()).with_context(|| format!("flood printed {s:?}"))
}

/// `l4lb-agent pktsink` on b0, in the backends netns, for one measurement.
struct Sink {
    child: std::process::Child,
}

impl Sink {
    fn start(t: &Topology, seconds: u32) -> Result<Sink> {
        use std::io::BufRead;
        // Outlives the warm-up and the flood; stopped (by its handle) after them.
        let lifetime = (u64::from(seconds) + 60).to_string();
        let mut child = t
            .backends
            .in_netns(agent_bin())
            .args(["pktsink", "--iface", "b0", "--seconds", &lifetime])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .context("starting l4lb-agent pktsink")?;
        let stdout = child.stdout.take().context("pktsink stdout")?;
        let mut line = String::new();
        // It prints "ready" once attached, or exits with an error.
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("l4lb-agent pktsink did not attach ({status})");
        }
        Ok(Sink { child })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn summarize(
    costs: &[(&str, u64)],
    pps: &[(Mode, Vec<f64>)],
    rounds: u32,
    seconds: u32,
    machine: &str,
) -> (String, String) {
    let cost_rows: Vec<Vec<String>> = costs
        .iter()
        .map(|(w, ns)| vec![w.to_string(), ns.to_string()])
        .collect();
    let established = costs.first().map(|c| c.1 as f64).unwrap_or(f64::NAN);
    let ns_verdict = format!(
        "established-flow cost {established:.0} ns (goal <= {NS_GOAL:.0} ns): {}",
        if established <= NS_GOAL {
            "met"
        } else {
            "NOT met"
        }
    );
    let get = |m: Mode| {
        pps.iter()
            .find(|(x, _)| *x == m)
            .map(|(_, v)| median(v))
            .unwrap_or(f64::NAN)
    };
    let ipt = get(Mode::Iptables);
    let rows: Vec<Vec<String>> = pps
        .iter()
        .map(|(m, v)| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            vec![
                m.label().to_string(),
                format!("{:.0}", median(v)),
                format!("{lo:.0}-{hi:.0}"),
                format!("{:.2}x", median(v) / ipt),
            ]
        })
        .collect();
    let (native, generic) = (get(Mode::L4lb) / ipt, get(Mode::L4lbGeneric) / ipt);
    let (nfib, gfib) = (get(Mode::L4lbFib) / ipt, get(Mode::L4lbGenericFib) / ipt);
    let dsr = get(Mode::L4lbDsr) / ipt;
    let best = native.max(generic).max(nfib).max(gfib).max(dsr);
    let pps_verdict = format!(
        "l4lb XDP / iptables DNAT = {native:.2}x native, {generic:.2}x generic, {nfib:.2}x native+fib, {gfib:.2}x generic+fib, {dsr:.2}x native+dsr (goal >= {RATIO_GOAL:.1}x): {}",
        if best >= RATIO_GOAL { "met" } else { "NOT met" }
    );
    let h1 = [
        "path through the XDP program (BPF_PROG_TEST_RUN, repeat)",
        "ns/packet",
    ];
    let h2 = ["node datapath", "pps (median)", "range", "vs iptables"];
    let text = format!(
        "{}{ns_verdict}\n\n{}{pps_verdict}\n{machine}\n",
        report::table(&h1, &cost_rows),
        report::table(&h2, &rows)
    );
    let markdown = format!(
        "## XDP datapath: ns per packet, and packets per second through the node\n\n\
         `cargo xtask bench xdp --rounds {rounds} --seconds {seconds}` on {{date}}.\n\n\
         Per packet: the agent's XDP program and maps, loaded in a sandbox, run {REPEAT} times \
         through BPF_PROG_TEST_RUN (kernel-timed mean; 60-byte frames). The kernel reuses one buffer \
         for every repeat, so two VIPs are each other's backend: each run's rewrite is the next run's \
         packet, and for the established rows the services' counters confirm every run took that path (before \
         2026-12-05 the runs after the first measured a packet to no VIP).\n\n{}\n{ns_verdict}.\n\n\
         Throughput: three namespaces (client — veth — node — veth — backends, checksum offload off). \
         The sender is `l4lb-agent pktgen` in `client`: an XDP program run through BPF_PROG_TEST_RUN in \
         live-frames mode, 60-byte UDP frames over {FLOWS} flows out of c0, pinned to CPU 0; it offers \
         1-3 million frames per second, several times what any mode delivers, so it is not the bound (the \
         sendmmsg sender used before offered ~270k/s and was). The backend is `l4lb-agent pktsink`: native \
         XDP on b0 dropping the frames in the driver, counted by the veth (`rx_queue_0_xdp_drops`), the \
         same small cost after every mode. GRO is on for n0 (a veth takes XDP frames only into NAPI) and \
         RPS hands n0's skb work to CPU 1; each mode in a fresh topology, modes interleaved over {rounds} \
         rounds of {seconds} s.\n\n{}\n{pps_verdict}.\n\n\
         Reading the numbers: the sender writes each frame's headers before it goes (a frame's page comes \
         back to it after the node's stack rewrote the MACs, TTL and NAT addresses for the next hop; \
         before 2026-12-05 most frames were dropped at n0 as addressed to another host, which capped every \
         mode near 0.4 million frames per second and hid the differences). The node's receive work runs on \
         the sender's CPU (veth NAPI), so frames beyond what that core's softirq takes are dropped at n0's \
         ring (the notes give offered vs delivered): the ceiling is this 2-core VM's, and the ratio to \
         iptables is the comparison. `--xdp-forward fib` never builds an skb in the node; native mode with \
         kernel forwarding still hands each frame to the node's stack after the rewrite. \
         `cargo xtask bench xdp-cpu` gives the CPU per packet at a rate every mode forwards.\n\n\
         Machine: {machine}.\n",
        report::md_table(&h1, &cost_rows),
        report::md_table(&h2, &rows),
    );
    (text, markdown)
}
