//! `l4lb-agent pktgen` / `pktsink`: the benchmark's traffic source and sink
//! (`l4lb-ebpf/src/pktgen.rs`, in their own object: the datapath's object
//! `run` loads does not contain them). The source runs through BPF_PROG_TEST_RUN in
//! live-frames mode, so frames leave an interface at kernel speed from one
//! template; the sink drops them in the receiving veth's driver. Both refuse
//! to run outside a named (`ip netns add`) network namespace: the source
//! floods whatever its interface leads to.
use std::{
    ffi::CString,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::{
    EbpfLoader,
    programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use serde::Serialize;

use crate::{model::Proto, packet};

/// The benchmark's programs (`l4lb_pktgen`, `l4lb_sink`), built by build.rs
/// from `l4lb-ebpf/src/bench.rs`.
static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l4lb-bench.bpf.o"));

/// Ethernet + IPv4 + UDP headers, which the program writes over every frame.
const HEAD_LEN: usize = l4lb_common::PKTGEN_HEAD_LEN;

/// Frames per BPF_PROG_TEST_RUN call; the time bound is checked between calls.
const RUNS_PER_CALL: u32 = 200_000;
/// Paced, most runs are dropped as not due; a run costs what the machine
/// gives it, so calls are sized by time (`paced_chunk`), starting here.
const PACED_FIRST_CALL: u32 = 20_000;
/// A paced call's target length: the time bound and the frame limit are
/// checked between calls; longer calls make the setup gaps rarer.
const PACED_CALL: Duration = Duration::from_millis(50);

/// Runs for the next paced call, from how long the last `runs` took.
fn paced_chunk(runs: u32, took: Duration) -> u32 {
    let per_run = took.as_secs_f64() / f64::from(runs.max(1));
    let want = PACED_CALL.as_secs_f64() / per_run.max(1e-9);
    want.clamp(1_000.0, f64::from(RUNS_PER_CALL) * 10.0) as u32
}
/// Frames per batch inside one call (the kernel's default is 64).
const BATCH: u32 = 64;

/// What to send, from where, for how long.
#[derive(Clone, Debug)]
pub struct Spec {
    pub iface: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: SocketAddrV4,
    /// UDP source ports 10000.. (one flow each), picked at random per frame.
    pub flows: u32,
    pub payload: usize,
    pub max_frames: u64,
    pub max_time: Duration,
    /// Frames per second to offer; 0: unpaced.
    pub rate: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub sent: u64,
    pub seconds: f64,
    pub pps: f64,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("{s:?} is not a MAC address"))?;
    }
    Ok(mac)
}

/// The template: UDP over IPv4 with checksum 0, so the program may change
/// the source port without touching a checksum.
fn template(spec: &Spec) -> Vec<u8> {
    let t = packet::Tuple {
        proto: Proto::Udp,
        src: SocketAddr::new(spec.src.into(), 10_000),
        dst: SocketAddr::V4(spec.dst),
    };
    let opts = packet::FrameOpts {
        payload: vec![0x5a; spec.payload],
        udp_no_checksum: true,
        ..packet::FrameOpts::default()
    };
    let mut f = packet::frame(&t, &opts);
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    f
}

fn ifindex(iface: &str) -> Result<u32> {
    if !super::xdp::in_named_netns()? {
        bail!("refusing to run outside a named network namespace (ip netns add)");
    }
    let name = CString::new(iface).context("interface name")?;
    // SAFETY: a NUL-terminated string that outlives the call.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => bail!("no interface {iface:?} in this network namespace"),
        i => Ok(i),
    }
}

/// Drops every frame arriving on `iface` (native XDP) for `time`, then
/// detaches. Calls `ready` once attached.
pub fn sink(iface: &str, time: Duration, ready: impl FnOnce()) -> Result<()> {
    ifindex(iface)?;
    let mut ebpf = EbpfLoader::new()
        .load(super::built_object(BENCH_OBJECT)?)
        .context("loading the benchmark BPF object")?;
    let prog: &mut Xdp = ebpf
        .program_mut("l4lb_sink")
        .context("l4lb_sink missing from the benchmark BPF object")?
        .try_into()?;
    prog.load().context("loading l4lb_sink")?;
    let link = prog
        .attach(iface, XdpMode::Driver)
        .with_context(|| format!("attaching l4lb_sink to {iface} (native mode)"))?;
    ready();
    std::thread::sleep(time);
    prog.detach(link)?;
    Ok(())
}

/// The paced program's count of frames it let out (`PKTGEN_PACE[1]`).
type PaceMap = aya::maps::Array<aya::maps::MapData, u64>;

fn take_pace(ebpf: &mut aya::Ebpf) -> Result<PaceMap> {
    let map = ebpf
        .take_map("PKTGEN_PACE")
        .context("PKTGEN_PACE missing from the benchmark BPF object")?;
    Ok(PaceMap::try_from(map)?)
}

/// Sends until `max_frames` or `max_time`, whichever comes first.
pub fn run(spec: &Spec) -> Result<Report> {
    let ifindex = ifindex(&spec.iface)?;
    let flows = spec.flows.max(1);
    let interval_ns: u64 = match spec.rate {
        0 => 0,
        r => (1_000_000_000 / r).max(1),
    };
    let frame = template(spec);
    let head: [u8; HEAD_LEN] = frame[..HEAD_LEN]
        .try_into()
        .context("template shorter than its headers")?;
    let mut ebpf = EbpfLoader::new()
        .override_global("PKTGEN_HEAD", &head, true)
        .override_global("PKTGEN_IFINDEX", &ifindex, true)
        .override_global("PKTGEN_FLOWS", &flows, true)
        .override_global("PKTGEN_INTERVAL_NS", &interval_ns, true)
        .override_global("PKTGEN_LIMIT", &spec.max_frames, true)
        .load(super::built_object(BENCH_OBJECT)?)
        .context("loading the benchmark BPF object")?;
    let pace = take_pace(&mut ebpf)?;
    let prog: &mut Xdp = ebpf
        .program_mut("l4lb_pktgen")
        .context("l4lb_pktgen missing from the benchmark BPF object")?
        .try_into()?;
    prog.load().context("loading l4lb_pktgen")?;
    let mut chunk = match interval_ns {
        0 => RUNS_PER_CALL,
        _ => PACED_FIRST_CALL,
    };
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < spec.max_frames && start.elapsed() < spec.max_time {
        let n = match interval_ns {
            0 => (spec.max_frames - sent).min(u64::from(chunk)) as u32,
            _ => chunk,
        };
        let call = Instant::now();
        let opts = TestRunOptions {
            data_in: Some(&frame),
            repeat: n,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..TestRunOptions::default()
        };
        prog.test_run(opts)
            .context("BPF_PROG_TEST_RUN (live frames)")?;
        sent = match interval_ns {
            0 => sent + u64::from(n),
            _ => {
                chunk = paced_chunk(n, call.elapsed());
                pace.get(&1, 0)?
            }
        };
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Report {
        sent,
        seconds,
        pps: sent as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_calls_are_sized_to_last_about_50_ms() {
        // 1 us per run: 50,000 runs.
        assert_eq!(paced_chunk(20_000, Duration::from_millis(20)), 50_000);
        // Very slow runs: never below 1,000; very fast: capped.
        assert_eq!(paced_chunk(1_000, Duration::from_secs(10)), 1_000);
        assert_eq!(paced_chunk(1_000, Duration::ZERO), RUNS_PER_CALL * 10);
    }
}
