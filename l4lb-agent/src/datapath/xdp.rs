//! The packet datapath's programs (`l4lb_xdp`, `l4lb_tc_ingress`,
//! `l4lb_tc_reply`): load and pin them, attach them to interfaces (XDP, or
//! tc ingress where packets may carry partial checksums: `offload.rs`), and
//! run them through BPF_PROG_TEST_RUN (aya's `TestRun`) for `explain`, the
//! tests and the benchmark.
use std::{
    collections::BTreeSet,
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData},
    programs::{
        SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode, tc::qdisc_add_clsact,
    },
};
use aya_obj::programs::XdpAttachType;
use l4lb_common::{
    CONNTRACK_MAP, CONNTRACK4_MAP, EXPLAIN_MAGIC, FlowKey, FlowKey4, FlowSlot4, FlowValue,
    TC_INGRESS_PROGRAM, TC_REPLY_PROGRAM, XDP_CONFIG_MAP, XDP_F_FIB, XDP_PROGRAM, flow_range,
};
use tracing::{info, warn};

use super::offload;
use crate::{
    codec,
    packet::{self, FrameOpts, Tuple},
};

/// XDP return codes (uapi `enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Where to attach the packet programs.
#[derive(Clone, Debug, Default)]
pub struct PacketAttach {
    /// XDP on ingress (and the tc reply program on egress) of these.
    pub xdp_ifaces: Vec<String>,
    /// The tc reply program also on the egress of these (replies that leave
    /// the node by another interface than the one the request came in on).
    pub reply_ifaces: Vec<String>,
    pub mode: Mode,
    /// Forward rewritten packets from XDP (`bpf_fib_lookup` + redirect)
    /// instead of XDP_PASS to the kernel's forwarding.
    pub fib: bool,
    /// Direct server return (`--xdp-dsr`).
    pub dsr: super::dsr::Dsr,
}

/// How to balance on an `--xdp-iface` (`--xdp-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// tc ingress on a veth with tx checksum offload on, else XDP in native
    /// (driver) mode, else generic.
    #[default]
    Auto,
    Native,
    Generic,
    /// The XDP program's balancing on tc ingress (`l4lb_tc_ingress`).
    Tc,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "native" | "driver" => Ok(Mode::Native),
            "generic" | "skb" => Ok(Mode::Generic),
            "tc" => Ok(Mode::Tc),
            o => Err(format!(
                "unknown XDP mode {o:?} (auto, native, generic or tc)"
            )),
        }
    }
}

/// Where XDP sends a rewritten packet (`--xdp-forward`). The variants carry no
/// doc comments on purpose: clap would print them in `--help` as a list, and
/// the flag's own help says what each value means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Forward {
    // XDP_PASS: the node's routing and netfilter forward the packet.
    #[default]
    Kernel,
    // bpf_fib_lookup, then XDP_REDIRECT/XDP_TX out of the egress interface.
    Fib,
}

impl Forward {
    /// True for `fib` (the `XDP_F_FIB` flag of the XDP config map).
    pub fn is_fib(self) -> bool {
        self == Forward::Fib
    }
}

/// How one interface got its programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceAttach {
    pub iface: String,
    /// "native", "generic" or "tc" (tc ingress); None = only the tc reply program.
    pub xdp_mode: Option<&'static str>,
}

/// Loads (verifier) both packet programs and pins them under `pin_root`,
/// replacing pins a previous agent left. Attaches nothing.
pub(super) fn load_and_pin(ebpf: &mut Ebpf, pin_root: &Path) -> Result<()> {
    let xdp = xdp_mut(ebpf)?;
    xdp.load()
        .with_context(|| format!("loading {XDP_PROGRAM} (verifier)"))?;
    repin(pin_root.join(XDP_PROGRAM), |p| xdp.pin(p))?;
    for name in [TC_REPLY_PROGRAM, TC_INGRESS_PROGRAM] {
        let tc = tc_named(ebpf, name)?;
        tc.load()
            .with_context(|| format!("loading {name} (verifier)"))?;
        repin(pin_root.join(name), |p| tc.pin(p))?;
    }
    Ok(())
}

fn repin(path: PathBuf, pin: impl FnOnce(&Path) -> Result<(), aya::pin::PinError>) -> Result<()> {
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing the old pin {}", path.display()));
        }
    }
    pin(&path).with_context(|| format!("pinning {}", path.display()))
}

fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(XDP_PROGRAM)
        .with_context(|| format!("program {XDP_PROGRAM} missing from the BPF object"))?
        .try_into()?)
}

fn tc_named<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the BPF object"))?
        .try_into()?)
}

fn xdp_ref(ebpf: &Ebpf) -> Result<&Xdp> {
    Ok(ebpf
        .program(XDP_PROGRAM)
        .with_context(|| format!("program {XDP_PROGRAM} missing"))?
        .try_into()?)
}

fn tc_ref(ebpf: &Ebpf) -> Result<&SchedClassifier> {
    tc_prog(ebpf, TC_REPLY_PROGRAM)
}

fn tc_prog<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a SchedClassifier> {
    Ok(ebpf
        .program(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?)
}

/// Refuses to attach to the host's own interfaces when the harness asks
/// (`L4LB_FORBID_HOST_NETNS`): then the agent's netns must be one created with
/// `ip netns add` (bound under /run/netns), as every test's is.
fn check_netns() -> Result<()> {
    if std::env::var_os("L4LB_FORBID_HOST_NETNS").is_none() {
        return Ok(());
    }
    if !in_named_netns()? {
        bail!(
            "refusing to attach XDP/tc outside a named network namespace (L4LB_FORBID_HOST_NETNS is set)"
        );
    }
    Ok(())
}

/// True if this process's netns is one bound under /run/netns (`ip netns add`).
pub(super) fn in_named_netns() -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let ours = fs::metadata("/proc/self/ns/net").context("stat /proc/self/ns/net")?;
    Ok(fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| fs::metadata(e.path()).ok())
        .any(|m| m.dev() == ours.dev() && m.ino() == ours.ino()))
}

/// Removes the pinned packet programs (their attachments end with the agent).
pub(super) fn teardown(pin_root: &Path, removed: &mut Vec<PathBuf>) -> Result<()> {
    for name in [XDP_PROGRAM, TC_REPLY_PROGRAM, TC_INGRESS_PROGRAM] {
        let path = pin_root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    Ok(())
}

/// XDP on each `xdp_ifaces` entry (native mode, else generic), the tc reply
/// program on the egress of those and of `reply_ifaces`. The links are not
/// pinned: they live as long as `ebpf`, i.e. the agent.
fn attach(ebpf: &mut Ebpf, want: &PacketAttach) -> Result<Vec<IfaceAttach>> {
    let flags = if want.fib { XDP_F_FIB } else { 0 } | want.dsr.flags();
    let mut config: Array<&mut MapData, u32> = ebpf
        .map_mut(XDP_CONFIG_MAP)
        .with_context(|| format!("map {XDP_CONFIG_MAP} missing from the BPF object"))?
        .try_into()?;
    config
        .set(0, flags, 0)
        .with_context(|| format!("writing {XDP_CONFIG_MAP}"))?;
    if want.xdp_ifaces.is_empty() && want.reply_ifaces.is_empty() {
        return Ok(Vec::new());
    }
    check_netns()?;
    let mut done = Vec::new();
    for iface in &want.xdp_ifaces {
        let mode = match ingress_mode(iface, want.mode)? {
            Mode::Tc => {
                attach_tc_ingress(ebpf, iface, want)?;
                info!(%iface, "tc ingress balancing attached");
                "tc"
            }
            mode => {
                let got = attach_xdp(xdp_mut(ebpf)?, iface, mode)?;
                let forward = if want.fib { "fib" } else { "kernel" };
                info!(%iface, mode = got, forward, "XDP attached");
                got
            }
        };
        done.push(IfaceAttach {
            iface: iface.clone(),
            xdp_mode: Some(mode),
        });
    }
    let tc = tc_named(ebpf, TC_REPLY_PROGRAM)?;
    let mut seen = BTreeSet::new();
    for iface in want.xdp_ifaces.iter().chain(&want.reply_ifaces) {
        if !seen.insert(iface.clone()) {
            continue;
        }
        // TCX (kernel >= 6.6) needs no qdisc; the netlink fallback needs clsact.
        let _ = qdisc_add_clsact(iface);
        tc.attach(iface, TcAttachType::Egress)
            .with_context(|| format!("attaching {TC_REPLY_PROGRAM} to the egress of {iface}"))?;
        info!(%iface, "tc reply program attached (egress)");
        if !want.xdp_ifaces.contains(iface) {
            done.push(IfaceAttach {
                iface: iface.clone(),
                xdp_mode: None,
            });
        }
    }
    Ok(done)
}

/// `mode`, unless `iface` passes partial checksums (`offload.rs`): then tc
/// ingress under `auto`, and a refusal under a forced XDP mode, which would
/// corrupt them.
fn ingress_mode(iface: &str, mode: Mode) -> Result<Mode> {
    if mode == Mode::Tc {
        return Ok(mode);
    }
    let off = match offload::read(iface) {
        Ok(o) => o,
        Err(e) => {
            warn!(%iface, "cannot read the offloads ({e}); assuming full checksums");
            return Ok(mode);
        }
    };
    if !off.partial_checksums() {
        return Ok(mode);
    }
    if mode == Mode::Auto {
        warn!(%iface, "veth with tx checksum offload on: balancing on tc ingress instead of XDP");
        return Ok(Mode::Tc);
    }
    bail!(
        "{iface} is a veth with tx checksum offload on: its peer sends packets with partial \
         checksums (CHECKSUM_PARTIAL), which XDP's rewrite corrupts. Use --xdp-mode auto or tc \
         (balancing on tc ingress), or turn the offload off on both ends of the pair: \
         `ethtool -K {iface} tx off` here and on the peer in its namespace"
    )
}

/// XDP on `iface` in `mode` (auto: native, else generic); the mode it got.
fn attach_xdp(xdp: &mut Xdp, iface: &str, mode: Mode) -> Result<&'static str> {
    let native = match mode {
        Mode::Generic => None,
        _ => Some(xdp.attach(iface, XdpMode::Driver)),
    };
    match native {
        Some(Ok(_)) => return Ok("native"),
        Some(Err(e)) if mode == Mode::Native => {
            return Err(e)
                .with_context(|| format!("attaching {XDP_PROGRAM} to {iface} in native mode"));
        }
        Some(Err(e)) => warn!(%iface, "native XDP refused ({e}); using generic (skb) mode"),
        None => {}
    }
    xdp.attach(iface, XdpMode::Skb)
        .with_context(|| format!("attaching {XDP_PROGRAM} to {iface} in generic mode"))?;
    Ok("generic")
}

/// The balancing on `iface`'s tc ingress (TCX, else a clsact qdisc).
fn attach_tc_ingress(ebpf: &mut Ebpf, iface: &str, want: &PacketAttach) -> Result<()> {
    let _ = qdisc_add_clsact(iface);
    tc_named(ebpf, TC_INGRESS_PROGRAM)?
        .attach(iface, TcAttachType::Ingress)
        .with_context(|| format!("attaching {TC_INGRESS_PROGRAM} to the ingress of {iface}"))?;
    if want.fib {
        warn!(%iface, "--xdp-forward fib does not apply on tc ingress: the kernel forwards");
    }
    if want.dsr != super::dsr::Dsr::Off {
        warn!(%iface, "--xdp-dsr does not apply on tc ingress: flows are translated");
    }
    Ok(())
}

/// One BPF_PROG_TEST_RUN: the program's return code, the frame it left, and
/// the kernel's mean time per run.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub action: u32,
    pub frame: Vec<u8>,
    pub per_run: Duration,
}

/// `xdp_md` as BPF_PROG_TEST_RUN takes it (uapi layout, offsets into data_in).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

impl XdpMd {
    fn as_bytes(&self) -> [u8; 24] {
        let f = [
            self.data,
            self.data_end,
            self.data_meta,
            self.ingress_ifindex,
            self.rx_queue_index,
            self.egress_ifindex,
        ];
        let mut b = [0u8; 24];
        for (i, v) in f.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }
}

/// Runs the XDP program on `frame` `repeat` times. With `explain`, the frame
/// carries [`EXPLAIN_MAGIC`] as metadata: the program decides as usual but
/// writes no map and no counter.
pub fn run_xdp(prog: &Xdp, frame: &[u8], explain: bool, repeat: u32) -> Result<RunOutput> {
    let meta = if explain {
        EXPLAIN_MAGIC.to_ne_bytes().to_vec()
    } else {
        Vec::new()
    };
    let mut data_in = meta.clone();
    data_in.extend_from_slice(frame);
    let ctx = XdpMd {
        data: meta.len() as u32,
        data_end: data_in.len() as u32,
        ..Default::default()
    };
    let ctx_in = ctx.as_bytes();
    let mut out = vec![0u8; data_in.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(&data_in),
        data_out: Some(&mut out),
        ctx_in: explain.then_some(&ctx_in[..]),
        repeat: repeat.max(1),
        ..Default::default()
    };
    let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN (XDP)")?;
    out.truncate(r.data_size_out as usize);
    // The output starts at data_meta: strip the metadata we put there.
    let frame = out
        .get(meta.len()..)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok(RunOutput {
        action: r.return_value,
        frame,
        per_run: r.duration,
    })
}

/// Runs a tc program on `frame` (an Ethernet frame, as on egress and ingress).
pub fn run_tc(prog: &SchedClassifier, frame: &[u8], repeat: u32) -> Result<RunOutput> {
    let mut out = vec![0u8; frame.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat: repeat.max(1),
        ..Default::default()
    };
    let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN (tc)")?;
    out.truncate(r.data_size_out as usize);
    Ok(RunOutput {
        action: r.return_value,
        frame: out,
        per_run: r.duration,
    })
}

impl super::Attached {
    /// Attaches the packet programs (loaded by `load`) to `want`'s interfaces
    /// and logs the XDP mode each one got.
    pub fn attach_packet(&mut self, want: &PacketAttach) -> Result<Vec<IfaceAttach>> {
        attach(&mut self._ebpf, want)
    }

    /// The loaded XDP program on `frame` (map writes and counters happen as
    /// for a received packet, unless `explain`).
    pub fn test_xdp(&self, frame: &[u8], explain: bool, repeat: u32) -> Result<RunOutput> {
        run_xdp(xdp_ref(&self._ebpf)?, frame, explain, repeat)
    }

    /// The loaded tc reply program on `frame`.
    pub fn test_tc(&self, frame: &[u8], repeat: u32) -> Result<RunOutput> {
        run_tc(tc_ref(&self._ebpf)?, frame, repeat)
    }

    /// The loaded tc ingress program (the balancing on the skb) on `frame`.
    pub fn test_tc_ingress(&self, frame: &[u8], repeat: u32) -> Result<RunOutput> {
        run_tc(tc_prog(&self._ebpf, TC_INGRESS_PROGRAM)?, frame, repeat)
    }
}

/// What `explain` found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Explanation {
    pub packet: String,
    /// "pass", "drop", or the raw XDP return code.
    pub action: String,
    /// The destination after the program ran (a backend, or the VIP itself
    /// when the program left the packet alone).
    pub destination: SocketAddr,
    pub rewritten: bool,
    pub backend_id: Option<u32>,
    /// The connection table already holds this flow (its backend is sticky).
    pub tracked: bool,
    pub verdict: String,
    /// Mean time of one run as the kernel measured it (BPF_PROG_TEST_RUN).
    pub ns_per_run: u64,
}

/// Runs the pinned (loaded) XDP program on a crafted packet from `src` to
/// `vip` and reports the backend it picks. `repeat` runs it that many times
/// (for the per-packet cost); `live` runs it as a received packet (records
/// the flow, bumps counters) instead of in explain mode.
pub fn explain(pin_root: &Path, tuple: &Tuple, repeat: u32, live: bool) -> Result<Explanation> {
    let path = pin_root.join(XDP_PROGRAM);
    let prog = Xdp::from_pin(&path, XdpAttachType::Interface).with_context(|| {
        format!(
            "opening the pinned XDP program {} (is the agent running with --pin-root {}?)",
            path.display(),
            pin_root.display()
        )
    })?;
    let tracked = tracked(pin_root, tuple).unwrap_or(false);
    let frame = packet::frame(tuple, &FrameOpts::default());
    let out = run_xdp(&prog, &frame, !live, repeat)?;
    let after = packet::parse(&out.frame).context("the program returned an unparsable frame")?;
    let rewritten = after.dst != tuple.dst;
    let maps = super::Maps::open_pinned(pin_root)?;
    let backend_id = if rewritten {
        maps.read_applied()?
            .backends
            .iter()
            .find(|(_, a)| **a == after.dst)
            .map(|(id, _)| *id)
    } else {
        None
    };
    let action = match out.action {
        XDP_PASS => "pass".to_string(),
        XDP_DROP => "drop".to_string(),
        n => n.to_string(),
    };
    let verdict = match (out.action, rewritten) {
        (XDP_PASS, true) => format!(
            "backend {}{}{}",
            after.dst,
            backend_id
                .map(|id| format!(" (id {id})"))
                .unwrap_or_default(),
            if tracked {
                ", tracked flow"
            } else {
                ", new flow (Maglev)"
            }
        ),
        (XDP_PASS, false) => "not a VIP: passes untouched".to_string(),
        (XDP_DROP, _) => "dropped: the VIP has no backend taking new flows".to_string(),
        (n, _) => format!("XDP action {n}"),
    };
    Ok(Explanation {
        packet: format!("{} {} -> {}", tuple.proto, tuple.src, tuple.dst),
        action,
        destination: after.dst,
        rewritten,
        backend_id,
        tracked,
        verdict,
        ns_per_run: out.per_run.as_nanos() as u64,
    })
}

fn tracked(pin_root: &Path, t: &Tuple) -> Result<bool> {
    let key = FlowKey {
        src: codec::addr6(t.src.ip()),
        dst: codec::addr6(t.dst.ip()),
        sport: t.src.port().to_be(),
        dport: t.dst.port().to_be(),
        proto: t.proto.ipproto(),
        _pad: [0; 3],
    };
    // IPv4 flows are kept in slots under a 16-byte key (`flow_slots`).
    if let Some(k4) = FlowKey4::of(&key) {
        let data = MapData::from_pin(pin_root.join(CONNTRACK4_MAP))?;
        let map: Array<MapData, FlowSlot4> = Map::from_map_data(data)?.try_into()?;
        let words = k4.to_words();
        let found = flow_range(&words, super::ct_seed::read(pin_root)?)
            .filter_map(|i| map.get(&i, 0).ok())
            .any(|slot| slot.key == words);
        return Ok(found);
    }
    let data = MapData::from_pin(pin_root.join(CONNTRACK_MAP))?;
    let map: HashMap<MapData, FlowKey, FlowValue> = Map::from_map_data(data)?.try_into()?;
    Ok(map.get(&key, 0).is_ok())
}
