//! `l4lb-agent monitor`: one line per balancing decision (connect, sendmsg,
//! XDP) with the backend chosen and why, read from the programs' ring
//! buffer while this command holds the monitor lease. VIP, backend and
//! sampling are filtered in the kernel; client and pid here.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_common::{
    Addr6, HOOK_XDP, LB_POLICY_RANDOM, MONITOR_ANY, MonitorConfig, MonitorEvent, hook_name,
    reason_name,
};
use serde::Serialize;

use crate::{
    datapath::{DEFAULT_PIN_ROOT, Maps, monitor::MonitorMaps},
    table,
};

/// How long a lease lasts without renewal: a monitor killed without
/// cleaning up stops the events within this.
const LEASE: Duration = Duration::from_secs(5);
const RENEW_EVERY: Duration = Duration::from_secs(1);
const POLL_EVERY: Duration = Duration::from_millis(10);

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    #[arg(long, default_value = DEFAULT_PIN_ROOT)]
    pub pin_root: PathBuf,
    /// Only decisions for this VIP (ADDR:PORT, as `vips` lists it).
    #[arg(long)]
    pub vip: Option<SocketAddr>,
    /// Only decisions that chose this backend (ADDR:PORT).
    #[arg(long)]
    pub backend: Option<SocketAddr>,
    /// Only this client address (XDP: the packet's source; socket hooks:
    /// the source an unconnected UDP sendmsg gave).
    #[arg(long)]
    pub client: Option<IpAddr>,
    /// Only calls made by this process id (socket hooks).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Report one decision in N, drawn in the kernel.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sample: u32,
    /// Stop after this many events.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// One decision, as printed.
#[derive(Debug, Serialize)]
pub struct Decision {
    pub ts_ns: u64,
    pub hook: &'static str,
    pub reason: &'static str,
    pub policy: &'static str,
    pub proto: &'static str,
    pub vip: SocketAddr,
    pub backend: Option<SocketAddr>,
    pub client: Option<SocketAddr>,
    pub pid: Option<u32>,
    pub service_id: u32,
    pub backend_id: u32,
}

pub fn run(args: MonitorArgs) -> Result<()> {
    let want = kernel_filter(&args)?;
    let mut maps = MonitorMaps::open_pinned(&args.pin_root)?;
    maps.lease(want, LEASE.as_nanos() as u64)?;
    // On stderr, so `--json` output stays one object per line.
    eprintln!("monitor: following decisions (Ctrl-C stops)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(follow(&args, want, &mut maps));
    maps.release();
    result
}

/// The VIP and backend filters as service and backend ids.
fn kernel_filter(args: &MonitorArgs) -> Result<MonitorConfig> {
    let mut c = MonitorConfig {
        sample: args.sample,
        service_id: MONITOR_ANY,
        backend_id: MONITOR_ANY,
        ..Default::default()
    };
    if args.vip.is_none() && args.backend.is_none() {
        return Ok(c);
    }
    let rows = table::vip_rows(&Maps::open_pinned(&args.pin_root)?)?;
    if let Some(vip) = args.vip {
        let ids: Vec<u32> = rows
            .iter()
            .filter(|r| r.vip == vip)
            .map(|r| r.service_id)
            .collect();
        match ids[..] {
            [] => bail!("{vip} is not a VIP in the maps (see `l4lb-agent vips`)"),
            [id] => c.service_id = id,
            // TCP and UDP on one address and port: filtered here instead.
            _ => {}
        }
    }
    if let Some(be) = args.backend {
        c.backend_id = rows
            .iter()
            .flat_map(|r| &r.backends)
            .find(|b| b.addr == be)
            .map(|b| b.backend_id)
            .with_context(|| format!("{be} is not a backend in the maps"))?;
    }
    Ok(c)
}

async fn follow(args: &MonitorArgs, want: MonitorConfig, maps: &mut MonitorMaps) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let until = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut renewed = Instant::now();
    let mut seen = 0u64;
    let mut tick = tokio::time::interval(POLL_EVERY);
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        let mut out = Vec::new();
        maps.drain(|e| out.push(decision(&e)));
        for d in out.iter().filter(|d| wanted(args, d)) {
            print(d, args.json)?;
            seen += 1;
            if args.count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        if renewed.elapsed() >= RENEW_EVERY {
            maps.lease(want, LEASE.as_nanos() as u64)?;
            renewed = Instant::now();
        }
    }
}

fn wanted(args: &MonitorArgs, d: &Decision) -> bool {
    args.vip.is_none_or(|v| v == d.vip)
        && args
            .client
            .is_none_or(|c| d.client.is_some_and(|a| a.ip() == c))
        && args.pid.is_none_or(|p| d.pid == Some(p))
}

fn print(d: &Decision, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(d)?);
        return Ok(());
    }
    let who = match (d.client, d.pid) {
        (Some(c), _) => c.to_string(),
        (None, Some(p)) => format!("pid {p}"),
        (None, None) => "-".into(),
    };
    let backend = d.backend.map_or_else(|| "-".to_owned(), |b| b.to_string());
    println!(
        "{:>14.6} {:<7} {:<3} {who} -> {} => {backend} ({}, {})",
        d.ts_ns as f64 / 1e9,
        d.hook,
        d.proto,
        d.vip,
        d.reason,
        d.policy
    );
    Ok(())
}

pub fn decision(e: &MonitorEvent) -> Decision {
    let pid = (e.hook != HOOK_XDP && e.pid_tgid != 0).then_some((e.pid_tgid >> 32) as u32);
    Decision {
        ts_ns: e.ts_ns,
        hook: hook_name(e.hook),
        reason: reason_name(e.reason),
        policy: match (e.hook, e.policy as u32) {
            (HOOK_XDP, _) => "maglev",
            (_, LB_POLICY_RANDOM) => "random",
            _ => "p2c",
        },
        proto: match e.proto {
            6 => "tcp",
            17 => "udp",
            _ => "?",
        },
        vip: socket(&e.vip, e.vip_port),
        backend: (e.backend_id != 0 && e.backend != [0; 4])
            .then(|| socket(&e.backend, e.backend_port)),
        client: (e.client != [0; 4]).then(|| socket(&e.client, e.client_port)),
        pid,
        service_id: e.service_id,
        backend_id: e.backend_id,
    }
}

/// A map address (IPv4-mapped or IPv6) and port (network order).
fn socket(addr: &Addr6, port_be: u16) -> SocketAddr {
    SocketAddr::new(crate::codec::ip(addr), u16::from_be(port_be))
}

#[cfg(test)]
mod tests {
    use l4lb_common::{HOOK_CONNECT, REASON_NEW, REASON_NO_BACKEND, v4_mapped};

    use super::*;

    fn v4(a: [u8; 4]) -> Addr6 {
        v4_mapped(u32::from_ne_bytes(a))
    }

    #[test]
    fn an_event_reads_as_the_decision_it_records() {
        let e = MonitorEvent {
            ts_ns: 1_500_000_000,
            pid_tgid: (4242u64 << 32) | 4243,
            vip: v4([11, 0, 0, 1]),
            vip_port: 6379u16.to_be(),
            backend: v4([127, 0, 0, 2]),
            backend_port: 7001u16.to_be(),
            hook: HOOK_CONNECT,
            reason: REASON_NEW,
            service_id: 3,
            backend_id: 9,
            proto: 6,
            ..Default::default()
        };
        let d = decision(&e);
        assert_eq!(d.vip, "11.0.0.1:6379".parse().unwrap());
        assert_eq!(d.backend, Some("127.0.0.2:7001".parse().unwrap()));
        assert_eq!(
            (d.hook, d.reason, d.policy, d.proto),
            ("connect", "new", "p2c", "tcp")
        );
        assert_eq!((d.pid, d.client), (Some(4242), None));
        let refused = MonitorEvent {
            reason: REASON_NO_BACKEND,
            backend_id: 0,
            backend: [0; 4],
            hook: HOOK_XDP,
            client: v4([198, 18, 0, 9]),
            client_port: 40000u16.to_be(),
            ..e
        };
        let d = decision(&refused);
        assert_eq!(
            (d.reason, d.policy, d.backend, d.pid),
            ("no-backend", "maglev", None, None)
        );
        assert_eq!(d.client, Some("198.18.0.9:40000".parse().unwrap()));
    }
}
