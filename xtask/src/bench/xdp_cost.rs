//! `bench xdp`'s first table: ns per packet through the XDP program, run by
//! BPF_PROG_TEST_RUN with `repeat`.
//!
//! The kernel runs every repeat on the same buffer, so after the first run a
//! VIP packet carries its backend's address and the rest of the runs
//! measured a packet to no VIP. (Before 2026-12-05 the "established flow" row
//! was that: 57 ns, like the non-VIP row.) Here two VIPs are each other's
//! backend: the rewrite of one flow is a packet of the other, so every run is
//! the path named, and the service counters confirm it (half the runs each).
//! The program and maps are the agent's, loaded in a sandbox (child cgroup,
//! own netns); nothing is attached to an interface.
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use l4lb_agent::{
    datapath::{self, Attached, Maps},
    model::{DesiredState, Proto, ServiceSpec, Vip},
    packet::{self, FrameOpts, Tuple},
    plan,
    reconcile::Reconciler,
};
use l4lb_tests::Sandbox;

pub const REPEAT: u32 = 2_000_000;
const A: &str = "11.0.0.1:9";
const B: &str = "11.0.0.2:9";
const SRC: &str = "198.18.1.2:40000";
const NEW_SRC: &str = "198.18.1.3:40000";

/// (what, ns per packet) for the five paths and the test run's floor.
pub fn per_packet() -> Result<Vec<(&'static str, u64)>> {
    let sb = Sandbox::new("bxdp-cost")?;
    let loaded = datapath::load(sb.pin_root(), sb.cgroup(), plan::Capacity::default())?;
    let maps = Maps::open_pinned(sb.pin_root())?;
    let mut rec = Reconciler::adopt(loaded.maps, Duration::ZERO)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    rt.block_on(rec.reconcile(&ping_pong()))?;
    let xdp = &loaded.attached;
    let tcp = established(xdp, &maps, Proto::Tcp)?;
    let udp = established(xdp, &maps, Proto::Udp)?;
    // Explaining records nothing, so a source never sent is new on every run.
    let new = run_from(xdp, Proto::Tcp, NEW_SRC, A, true)?;
    let other = run(xdp, Proto::Tcp, "11.0.0.99:9", false)?;
    // A VIP address, a port that is no service: past the pre-filter.
    let vip_port = run(xdp, Proto::Tcp, "11.0.0.1:10", false)?;
    let floor = not_ip(xdp)?;
    Ok(vec![
        (
            "UDP, established flow (connection-table hit, counters)",
            udp,
        ),
        (
            "TCP, established flow (connection-table hit, counters)",
            tcp,
        ),
        (
            "TCP, new flow lookups (Maglev pick; explain mode: no map writes)",
            new,
        ),
        ("TCP, not a VIP (pre-filter array read, pass)", other),
        (
            "TCP, VIP address, no service on the port (filter, flow and service misses)",
            vip_port,
        ),
        ("not IP (EtherType read, pass: the test run's floor)", floor),
    ])
}

/// A frame whose EtherType is ARP: the program reads two bytes and passes
/// it, so this is what BPF_PROG_TEST_RUN itself costs per repeat.
fn not_ip(xdp: &Attached) -> Result<u64> {
    let mut frame = packet::frame(&tuple(Proto::Tcp, SRC, A), &FrameOpts::default());
    frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let out = xdp.test_xdp(&frame, false, REPEAT).context("ARP frame")?;
    Ok(out.per_run.as_nanos() as u64)
}

/// VIP A's backend is VIP B and B's is A, for TCP and UDP.
fn ping_pong() -> DesiredState {
    let mut desired = DesiredState::default();
    for (vip, backend) in [(A, B), (B, A)] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let spec = ServiceSpec {
                name: None,
                framework: None,
                origin: None,
                backends: [(backend.parse().expect("address"), 1)]
                    .into_iter()
                    .collect(),
            };
            let addr = vip.parse().expect("address");
            desired.services.insert(Vip { addr, proto }, spec);
        }
    }
    desired
}

/// The established path: the flows are recorded by a first run, then every
/// repeat must count one packet on A or B.
fn established(xdp: &Attached, maps: &Maps, proto: Proto) -> Result<u64> {
    let frame = packet::frame(&tuple(proto, SRC, A), &FrameOpts::default());
    xdp.test_xdp(&frame, false, 2)?;
    let ids = [A, B].map(|v| {
        maps.service_value(&Vip {
            addr: v.parse().expect("address"),
            proto,
        })
        .map(|s| s.id)
    });
    let [Some(a), Some(b)] = ids else {
        anyhow::bail!("the ping-pong services are not in the maps");
    };
    let count = || maps.service_stats(a).packets + maps.service_stats(b).packets;
    let before = count();
    let ns = run(xdp, proto, A, false)?;
    let counted = count() - before;
    ensure!(
        counted == u64::from(REPEAT),
        "{proto}: {counted} of {REPEAT} runs took the established path"
    );
    Ok(ns)
}

/// Mean ns per run of `REPEAT` runs on a packet from SRC to `dst`.
fn run(xdp: &Attached, proto: Proto, dst: &str, explain: bool) -> Result<u64> {
    run_from(xdp, proto, SRC, dst, explain)
}

fn run_from(xdp: &Attached, proto: Proto, src: &str, dst: &str, explain: bool) -> Result<u64> {
    let frame = packet::frame(&tuple(proto, src, dst), &FrameOpts::default());
    let out = xdp
        .test_xdp(&frame, explain, REPEAT)
        .with_context(|| format!("{proto} to {dst}"))?;
    Ok(out.per_run.as_nanos() as u64)
}

fn tuple(proto: Proto, src: &str, dst: &str) -> Tuple {
    Tuple {
        proto,
        src: src.parse().expect("address"),
        dst: dst.parse().expect("address"),
    }
}
