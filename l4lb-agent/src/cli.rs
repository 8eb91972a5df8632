//! Command line.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::datapath::DEFAULT_PIN_ROOT;

#[derive(Parser, Debug)]
#[command(
    name = "l4lb-agent",
    version,
    about = "DC/OS-style VIP load balancing on an eBPF datapath"
)]
pub struct Cli {
    /// Log filter (tracing env-filter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the datapath and keep it equal to the VIP source until SIGTERM/SIGINT.
    Run(Box<RunArgs>),
    /// Print the VIP table from the pinned maps (works while the agent is stopped).
    Vips {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print every backend with the VIPs it serves, from the pinned maps.
    Backends {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print totals and map usage against capacity, from the pinned maps.
    Stats {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Validate a VIP file and print the table it describes; touches nothing.
    Check {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Follow the programs' decisions live: one line per connect, sendmsg or
    /// XDP flow with the backend chosen and why (sampled, filterable).
    Monitor(crate::monitor::MonitorArgs),
    /// Run the loaded (pinned) XDP program on a crafted packet and print the
    /// backend it picks (BPF_PROG_TEST_RUN; writes no map, bumps no counter).
    Explain(ExplainArgs),
    /// Benchmark traffic source: UDP frames out of an interface at kernel speed
    /// (BPF_PROG_TEST_RUN live frames). Only inside a test network namespace.
    #[command(hide = true)]
    Pktgen(PktgenArgs),
    /// Benchmark sink: drops every frame arriving on an interface (native XDP)
    /// for a while; the veth counts them. Only inside a test network namespace.
    #[command(hide = true)]
    Pktsink {
        #[arg(long)]
        iface: String,
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
    },
    /// Destroy the connected UDP sockets of this network namespace that the
    /// hooks connected through a VIP to one of these backends (`run` does this
    /// by itself when a backend leaves a VIP); prints a JSON report.
    #[command(name = "debug-destroy-udp", hide = true)]
    DebugDestroyUdp {
        #[arg(long = "backend", required = true)]
        backends: Vec<std::net::SocketAddr>,
        /// Only sockets connected through this VIP (repeatable; default: any VIP).
        #[arg(long = "vip")]
        vips: Vec<std::net::SocketAddr>,
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
    },
    /// Check the pinned state as adoption does (layout record, every
    /// service's table against its members, every hook's link); prints JSON,
    /// exits non-zero on any problem.
    #[command(hide = true)]
    Verify {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
        /// Also check that every hook is attached to this cgroup.
        #[arg(long)]
        cgroup: Option<PathBuf>,
    },
    /// Remove the pinned maps installed under --pin-root.
    Teardown {
        #[arg(long, default_value = DEFAULT_PIN_ROOT)]
        pin_root: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Static VIP file (YAML or JSON). Re-read on SIGHUP and when the file
    /// changes (also through symlink swaps, as Kubernetes ConfigMaps update).
    #[arg(long, conflicts_with = "demo")]
    pub config: Option<PathBuf>,
    /// Serve the embedded demo table (examples/demo.yaml). The only way to it:
    /// a `run` with no source is an error, never the demo's table on a real node.
    #[arg(long)]
    pub demo: bool,
    /// Where explicit (IP) VIPs may live (repeatable). Named VIPs are allocated
    /// in 11.0.0.0/8 and fd01:c::/64. Whatever this says, no VIP may take a
    /// loopback, link-local or multicast address, an address of this node, a
    /// control-plane or DNS endpoint, or a backend's address.
    #[arg(long = "vip-cidr", value_name = "CIDR", value_parser = crate::guard::parse_cidr,
          default_values_t = crate::guard::DEFAULT_VIP_CIDRS.map(|c| crate::guard::parse_cidr(c).expect("valid default")))]
    pub vip_cidrs: Vec<ipnet::IpNet>,
    /// cgroup v2 directory whose processes are load-balanced. Default: the cgroup v2
    /// root, i.e. every process on the node.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// bpffs directory where the maps are pinned (kept across restarts).
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// Wait between switching a service to its new backend set and deleting the
    /// old set's entries.
    #[arg(long, default_value_t = crate::reconcile::DEFAULT_GRACE.as_millis() as u64)]
    pub grace_ms: u64,
    /// Address of the Prometheus `/metrics`, `/healthz` and `/readyz` endpoint
    /// (loopback by default; `--no-metrics` turns it off).
    #[arg(long, default_value = crate::metrics::DEFAULT_LISTEN, conflicts_with = "no_metrics")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[arg(long)]
    pub no_metrics: bool,
    /// Per-backend series on /metrics (`l4lb_backend_*`, 15 a backend of a VIP)
    /// only while the VIPs have at most this many backends in all: at 10,000
    /// VIPs x 5 backends they would be ~850,000 series, ~60 MB a scrape. Above
    /// it a scrape has the per-VIP series only, and
    /// `l4lb_metrics_omitted_backends` says how many were left out;
    /// `l4lb-agent backends` still lists every one.
    #[arg(long, value_name = "N", default_value_t = crate::metrics::DEFAULT_MAX_BACKENDS)]
    pub metrics_max_backends: usize,
    /// Serve /metrics, /healthz and /readyz without the `/v1` discovery API
    /// (Mesos-DNS's and dcos-net's JSON, as Mesos-DNS's `HttpOn: false`).
    /// With DNS and locality off too, the Marathon source then keeps no task
    /// records (~16 MB less at 10,000 apps x 5 tasks).
    #[arg(long)]
    pub no_discovery_api: bool,
    /// Do not route VIP addresses to the `l4lb0` dummy interface (by default
    /// VIP packets that escaped the hooks are dropped there, never sent out).
    #[arg(long)]
    pub no_vip_routes: bool,
    /// Interface whose incoming traffic to VIPs is load-balanced by the XDP
    /// program (or on tc ingress: `--xdp-mode`); the tc reply program goes on
    /// its egress. Repeatable.
    #[arg(long = "xdp-iface", value_name = "IFACE")]
    pub xdp_ifaces: Vec<String>,
    /// Extra interface for the tc reply program only (egress), for replies
    /// that leave the node elsewhere than where the request came in. Repeatable.
    #[arg(long = "xdp-reply-iface", value_name = "IFACE")]
    pub xdp_reply_ifaces: Vec<String>,
    /// How to balance on an `--xdp-iface`: auto (tc ingress on a veth with tx
    /// checksum offload on, whose partial checksums XDP would corrupt; else
    /// XDP native, else generic), native, generic (both refuse such a veth),
    /// or tc (the same balancing on tc ingress, on every `--xdp-iface`).
    #[arg(long, default_value = "auto")]
    pub xdp_mode: crate::datapath::xdp::Mode,
    /// Where XDP sends a rewritten packet: `kernel` (XDP_PASS: the node's
    /// routing and netfilter forward it) or `fib` (bpf_fib_lookup, then
    /// XDP_REDIRECT/XDP_TX straight out of the egress interface, skipping the
    /// node's stack; falls back to `kernel` per packet when the FIB has no answer).
    #[arg(long, value_enum, default_value_t = crate::datapath::xdp::Forward::Kernel)]
    pub xdp_forward: crate::datapath::xdp::Forward,
    /// Capacity of the services map (VIP addr+port+proto), 1–65,536.
    #[arg(long, default_value_t = l4lb_common::MAX_SERVICES, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_services: u32,
    /// Capacity of the backends map (distinct backend addr:port), 2–1,048,576.
    #[arg(long, default_value_t = l4lb_common::MAX_BACKENDS, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    pub max_backends: u32,
    /// Size of the slots array holding every service's Maglev table (8 bytes of
    /// kernel memory per slot, preallocated). A service takes 251 slots for 1–2
    /// backends, 503 for up to 5, ~100 per backend beyond; twice while changing.
    #[arg(long, default_value_t = l4lb_common::MAX_SLOTS, value_parser = clap::value_parser!(u32).range(251..=268_435_456))]
    pub max_slots: u32,
    /// How connect() picks a TCP backend: `p2c` (power of two choices: two
    /// random Maglev slots, backends down or suspect for this node skipped,
    /// the one with fewer connections and faster handshakes wins) or `random`
    /// (a uniformly random slot). UDP keeps a random slot per socket either way.
    #[arg(long, value_enum, default_value_t = crate::datapath::health::LbPolicy::P2c)]
    pub lb_policy: crate::datapath::health::LbPolicy,
    /// The resolver configuration used to look up agents the control plane
    /// reports by host name (and whose nameservers no VIP may take).
    /// /etc/hosts is read first, as the system resolver does.
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    #[command(flatten)]
    pub marathon: crate::marathon::args::MarathonArgs,

    #[command(flatten)]
    pub mesos: crate::mesos::args::MesosArgs,
    #[command(flatten)]
    pub dns: crate::dns::DnsArgs,
    #[command(flatten)]
    pub locality: crate::locality::LocalityArgs,
    /// Who probes a TCP backend that is down for this node once its back-off
    /// (2 s, doubling to 30 s per failed probe) is over: `agent` (this
    /// process connects to it, bounded by 1 s; no client connection is ever
    /// a probe) or `connection` (the next client connect that draws it is
    /// the half-open probe: for an agent that cannot reach the backends'
    /// network itself). UDP backends are never down, so never probed.
    #[arg(long, value_enum, default_value_t = crate::datapath::health::HealthProbes::Agent)]
    pub health_probes: crate::datapath::health::HealthProbes,
    /// Direct server return for XDP flows: `off`, or `l2` (a backend on this
    /// node's L2 segment that listens on the VIP's port gets the packet with
    /// only its destination MAC changed; it holds the VIP on a loopback with
    /// ARP/ND for it suppressed (`deploy/dsr-backend-setup.sh`) and answers
    /// the client directly, so replies never cross the node).
    #[arg(long, value_enum, default_value_t = crate::datapath::dsr::Dsr::Off)]
    pub xdp_dsr: crate::datapath::dsr::Dsr,
}

#[derive(clap::Args, Debug)]
pub struct PktgenArgs {
    /// Interface the frames leave by (in the caller's network namespace).
    #[arg(long)]
    pub iface: String,
    /// Ethernet source and destination (the peer's MAC).
    #[arg(long)]
    pub src_mac: String,
    #[arg(long)]
    pub dst_mac: String,
    #[arg(long)]
    pub src: std::net::Ipv4Addr,
    /// UDP destination, e.g. 11.0.0.50:9.
    #[arg(long)]
    pub dst: std::net::SocketAddrV4,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub flows: u32,
    /// UDP payload bytes (18: 60-byte frames).
    #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u64).range(0..=1400))]
    pub payload: u64,
    /// Stop after this many frames …
    #[arg(long, default_value_t = 100_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub frames: u64,
    /// … or this many seconds, whichever comes first.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Frames per second to offer (0: as fast as the kernel takes them), paced
    /// in the kernel, so CPU per packet can be read at a load below saturation.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub rate: u64,
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The VIP the packet is sent to, e.g. 11.0.0.1:6379 or '[fd01:c::1]:80'.
    #[arg(long)]
    pub vip: std::net::SocketAddr,
    #[arg(long, default_value = "tcp")]
    pub proto: crate::model::Proto,
    /// The client address and port the packet comes from (same family as --vip).
    #[arg(long)]
    pub src: std::net::SocketAddr,
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Run the packet N times and report the kernel's mean time per run.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub repeat: u32,
    /// Run it as a received packet: records the flow and bumps the counters
    /// (for benchmarks of the established-flow path; not for live nodes).
    #[arg(long)]
    pub live: bool,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, RunArgs};
    use crate::datapath::xdp::Forward;

    /// The agent's argv in the shipped systemd unit (`ExecStart=`, with its
    /// continuation lines) and DaemonSet (the one-line `args: [...]`).
    fn deploy_argvs() -> Vec<(&'static str, Vec<String>)> {
        let unit = include_str!("../../deploy/l4lb-agent.service");
        let start = unit.find("\nExecStart=").expect("ExecStart") + 1;
        let mut exec = String::new();
        for line in unit[start..].lines() {
            exec.push_str(line.trim_end_matches('\\'));
            exec.push(' ');
            if !line.ends_with('\\') {
                break;
            }
        }
        let mut systemd: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
        systemd[0] = "l4lb-agent".into(); // ExecStart=/usr/local/bin/l4lb-agent
        let ds = include_str!("../../deploy/daemonset.yaml");
        let line = ds
            .lines()
            .find_map(|l| l.trim().strip_prefix("args: "))
            .expect("args");
        let args: Vec<String> = serde_json::from_str(line).expect("args: a JSON-style list");
        let daemonset = std::iter::once("l4lb-agent".to_owned())
            .chain(
                args.into_iter()
                    .map(|a| a.replace("$(NODE_IP)", "198.51.100.4")),
            )
            .collect();
        vec![("systemd unit", systemd), ("DaemonSet", daemonset)]
    }

    #[test]
    fn shipped_deploy_files_pass_flags_the_agent_takes() {
        for (what, argv) in deploy_argvs() {
            let cli =
                Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{what}: {argv:?}: {e}"));
            let Command::Run(args) = cli.command else {
                panic!("{what}: not `run`: {argv:?}");
            };
            assert!(
                !args.mesos.mesos.is_empty(),
                "{what}: no control-plane source"
            );
            assert!(!args.dns.dns_listen.is_empty(), "{what}: no DNS listener");
            assert!(!args.no_metrics, "{what}: no /healthz, /readyz");
        }
    }

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = [&["l4lb-agent", "run", "--demo"][..], extra].concat();
        match Cli::try_parse_from(argv)?.command {
            Command::Run(args) => Ok(*args),
            _ => unreachable!("parsed `run`"),
        }
    }

    #[test]
    fn xdp_dsr_takes_off_and_l2_and_defaults_to_off_and_xdp_mode_takes_tc() {
        use crate::datapath::{dsr::Dsr, xdp::Mode};
        let none = run_args(&[]).unwrap();
        assert_eq!((none.xdp_dsr, none.xdp_mode), (Dsr::Off, Mode::Auto));
        assert_eq!(run_args(&["--xdp-dsr", "l2"]).unwrap().xdp_dsr, Dsr::L2);
        assert_eq!(run_args(&["--xdp-dsr=off"]).unwrap().xdp_dsr, Dsr::Off);
        assert!(run_args(&["--xdp-dsr", "ipip"]).is_err());
        assert_eq!(run_args(&["--xdp-mode", "tc"]).unwrap().xdp_mode, Mode::Tc);
    }

    #[test]
    fn xdp_forward_takes_kernel_and_fib_and_defaults_to_kernel() {
        assert_eq!(run_args(&[]).unwrap().xdp_forward, Forward::Kernel);
        let kernel = run_args(&["--xdp-forward", "kernel"]).unwrap();
        assert_eq!(kernel.xdp_forward, Forward::Kernel);
        assert!(!kernel.xdp_forward.is_fib());
        let fib = run_args(&["--xdp-forward=fib"]).unwrap();
        assert_eq!(fib.xdp_forward, Forward::Fib);
        assert!(fib.xdp_forward.is_fib());
    }

    #[test]
    fn health_probes_default_to_the_agent_and_take_connection() {
        use crate::datapath::health::HealthProbes;
        assert_eq!(run_args(&[]).unwrap().health_probes, HealthProbes::Agent);
        assert_eq!(
            run_args(&["--health-probes", "connection"])
                .unwrap()
                .health_probes,
            HealthProbes::Connection
        );
        assert!(run_args(&["--health-probes", "kernel"]).is_err());
    }

    #[test]
    fn lb_policy_defaults_to_p2c_and_takes_random() {
        use crate::datapath::health::LbPolicy;
        assert_eq!(run_args(&[]).unwrap().lb_policy, LbPolicy::P2c);
        assert_eq!(
            run_args(&["--lb-policy", "random"]).unwrap().lb_policy,
            LbPolicy::Random
        );
        let e = run_args(&["--lb-policy", "least"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn xdp_forward_refuses_other_values() {
        for bad in ["FIB", "Kernel", "redirect", ""] {
            let e = run_args(&["--xdp-forward", bad]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{bad:?}");
        }
    }

    #[test]
    fn xdp_forward_help_lists_the_values_and_the_default() {
        let mut cmd = Cli::command();
        let run = cmd.find_subcommand_mut("run").expect("run subcommand");
        let help = run.render_long_help().to_string();
        // The flag's entry, however clap wraps it: up to the next flag.
        let start = help
            .find("--xdp-forward <XDP_FORWARD>")
            .expect("--xdp-forward in run --help");
        let entry = &help[start..help[start..].find("--max-services").unwrap() + start];
        let entry = entry.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            entry.contains("Where XDP sends a rewritten packet"),
            "{entry}"
        );
        assert!(
            entry.ends_with("[default: kernel] [possible values: kernel, fib]"),
            "{entry}"
        );
    }
}
