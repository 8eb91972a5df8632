//! `cargo xtask bench …`: one file per benchmark, and the parts they share.
//!
//! | file | what |
//! |---|---|
//! | `socket.rs` | `bench socket`: connect() direct vs through a VIP |
//! | `xdp.rs` | `bench xdp`: the XDP datapath next to iptables/nftables DNAT |
//! | `marathon.rs` | `bench marathon`: full sync and event → maps latency |
//! | `mesos.rs` | `bench mesos`: SUBSCRIBED snapshot and event → maps + DNS latency |
//! | `dns.rs` | `bench dns`: the embedded DNS server under dnsperf |
//! | `peers.rs` | `bench peers`: the socket path next to iptables, nftables, HAProxy |
//! | `redis.rs` | `bench redis`: redis-benchmark direct vs via a VIP |
//! | `scaling.rs` | `bench scaling`: connect latency vs number of services |
//! | `failover.rs` | `bench failover`: a node dies on a simulated cluster; how long until clients route around it |
//! | `locality.rs` | `bench locality`: each node's share on its own backend, and the spill when it stops answering |
//! | `xdp_cpu.rs` | `bench xdp-cpu`: the node's CPU per forwarded packet at a paced rate, l4lb vs iptables/nftables |
//! | `failover_slow.rs` | `bench failover`'s slow-backend part: p50/p99 and the slow backend's share, per policy |
//! | `fleet.rs`, `fleet_run.rs` | `bench fleet`: N agents on one fake Marathon: what they cost it, change -> every node's maps, resync stampede |
//! | `churn.rs` | `bench churn`: sustained new connections/s and failures under conntrack, l4lb vs its peers |
//! | `peers_split.rs` | `bench peers`: the programs' cost per VIP connect inside the mixed cycle |
//! | `peer_setup.rs` | the five ways to one backend that `peers` and `churn` compare |
//! | `all.rs` | `bench all` / `bench profile`: everything, BENCHMARKS.md's summary |
//! | `control.rs` | the fake Marathon state and agent `marathon` and `dns` share |
//! | `agent_log.rs` | reading the agent's log (fields, timestamps, waits) |
//! | `common.rs` | one sandbox per run, commands in it, the git revision |
//! | `procfs.rs` | /proc and cgroup readers (memory, CPU time, drop counters) |
//! | `stats.rs` | median, percentile, min/max: one NaN policy |
//! | `paired.rs` | per-cycle differences of interleaved targets (`socket`, `peers`): median, range over rounds |
mod agent_log;
mod all;
mod bpf_stats;
mod churn;
mod common;
mod control;
mod dns;
mod failover;
mod failover_slow;
mod fleet;
mod fleet_run;
mod knot;
mod locality;
mod marathon;
mod marathon_dns;
mod mesos;
mod paired;
mod peer_setup;
mod peers;
mod peers_split;
mod procfs;
mod redis;
mod scaling;
mod socket;
mod stats;
mod xdp;
mod xdp_cost;
mod xdp_cpu;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// connect() latency and rate: direct to a backend vs through a VIP.
    Socket {
        /// Connections per round.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=socket::MAX_ITERATIONS as i64))]
        iterations: u32,
        /// Rounds per mode (direct and VIP alternate).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=socket::MAX_ROUNDS as i64))]
        rounds: u32,
        /// Also replace this benchmark's section in BENCHMARKS.md.
        #[arg(long)]
        write: bool,
        /// An empty NAT chain in the sandbox's netns, so conntrack tracks
        /// both paths (as in `bench peers`); not with --write.
        #[arg(long)]
        conntrack: bool,
        /// The agent's `--lb-policy` (p2c, random) for the VIP path.
        #[arg(long, default_value = "p2c")]
        lb_policy: String,
        /// Debug binaries, no release build: for comparing the programs' run
        /// time between two builds (the latencies are the debug probe's).
        #[arg(long, conflicts_with = "write")]
        debug_build: bool,
    },
    /// XDP datapath: ns per packet (BPF_PROG_TEST_RUN) and packets per second
    /// through the node netns vs iptables and nftables DNAT.
    Xdp {
        /// Rounds per mode (modes interleave).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=xdp::MAX_ROUNDS as i64))]
        rounds: u32,
        /// Seconds of flood per mode and round.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=xdp::MAX_SECONDS as i64))]
        seconds: u32,
        /// Also replace this benchmark's section in BENCHMARKS.md.
        #[arg(long)]
        write: bool,
        /// Only the per-packet program costs (no floods, nothing written):
        /// for comparing one change of the program.
        #[arg(long, conflicts_with = "write")]
        cost_only: bool,
    },
    /// Marathon source: full sync of N apps x M tasks (wall time, peak RSS)
    /// and event -> maps latency with K apps loaded.
    Marathon(marathon::MarathonArgs),
    /// Mesos source: a SUBSCRIBED snapshot of N tasks (wall time, peak RSS)
    /// and TASK_UPDATED -> maps + DNS latency at that size.
    Mesos(mesos::MesosArgs),
    /// Embedded DNS: dnsperf A and SRV queries, qps per agent CPU core.
    Dns(dns::DnsArgs),
    /// Socket path next to its peers: direct, l4lb, iptables DNAT, nftables
    /// DNAT, HAProxy; connect + request/response latency and conn/s.
    Peers(peers::PeersArgs),
    /// Persistent-connection throughput: redis-benchmark direct vs via a VIP.
    Redis(redis::RedisArgs),
    /// Connect latency vs number of services: l4lb vs iptables DNAT; plot.
    Scaling(scaling::ScalingArgs),
    /// Node death on a simulated cluster: time until clients on other nodes
    /// stop choosing the dead node's backend, failed/stalled connects, per policy.
    Failover(failover::FailoverArgs),
    /// Locality on a simulated cluster: each node's share of connections on
    /// its own backend (`--locality off` vs `node`), and how fast a node
    /// spills when its backend stops answering it.
    Locality(locality::LocalityArgs),
    /// Callgrind on the agent's full sync; BPF program sizes.
    Profile(all::ProfileArgs),
    /// Every benchmark, then BENCHMARKS.md's summary (also `cargo xtask bench`).
    All(all::AllArgs),
    /// The node's CPU per forwarded packet at a paced rate: l4lb XDP next to
    /// iptables and nftables DNAT.
    XdpCpu(xdp_cpu::XdpCpuArgs),
    /// N agents on one fake Marathon: requests and bytes it serves per change
    /// and per minute, change -> every node's maps, a resync stampede.
    Fleet(fleet::FleetArgs),
    /// Sustained new TCP connections/s and failures under conntrack: l4lb
    /// next to direct, iptables, nftables and HAProxy.
    Churn(churn::ChurnArgs),
}

pub fn run(what: Bench) -> Result<()> {
    match what {
        Bench::Socket {
            iterations,
            rounds,
            write,
            conntrack,
            lb_policy,
            debug_build,
        } => socket::socket(
            iterations,
            rounds,
            write,
            conntrack,
            &lb_policy,
            !debug_build,
        ),
        Bench::Xdp {
            rounds,
            seconds,
            write,
            cost_only,
        } => xdp::run(if cost_only { 0 } else { rounds }, seconds, write),
        Bench::Marathon(args) => marathon::marathon(args),
        Bench::Mesos(args) => mesos::mesos(args),
        Bench::Dns(args) => dns::dns(args),
        Bench::Peers(args) => peers::peers(args),
        Bench::Redis(args) => redis::redis(args),
        Bench::Scaling(args) => scaling::run(args),
        Bench::Failover(args) => failover::failover(args),
        Bench::Locality(args) => locality::locality(args),
        Bench::Profile(args) => all::profile(args),
        Bench::All(args) => all::run(args),
        Bench::XdpCpu(args) => xdp_cpu::xdp_cpu(args),
        Bench::Fleet(args) => fleet::fleet(args),
        Bench::Churn(args) => churn::churn(args),
    }
}
