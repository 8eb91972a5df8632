//! `bench failover`'s slow-backend part: three backends behind one VIP in a
//! sandbox, each answering a request after `base_ms`, one after `factor` ×
//! that; concurrent clients (`l4lb-probe requests`) through the VIP under
//! one `--lb-policy`. What p2c's least-loaded choice buys: the slow backend
//! holds its connections longer, so it has more live ones and gets fewer
//! new ones; `random` gives it its third whatever it does.
//!
//! Safety: the sandbox's netns and child cgroup only; the load is bounded by
//! a request count and a time.
use anyhow::{Context, Result};
use l4lb_tests::{Agent, Sandbox};
use std::time::Duration;

const VIP: &str = "11.0.0.1:7000";
const BACKENDS: [(&str, &str); 3] = [
    ("a", "127.0.0.2"),
    ("b", "127.0.0.3"),
    ("slow", "127.0.0.4"),
];

#[derive(clap::Args, Clone, Debug)]
pub struct SlowArgs {
    /// Every backend answers each request after this long …
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub slow_base_ms: u64,
    /// … and the slow one this many times slower.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub slow_factor: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub slow_parallel: u32,
    /// Seconds of load per policy (0: skip the slow-backend part).
    #[arg(long, default_value_t = 5.0)]
    pub slow_seconds: f64,
}

/// One policy's result.
#[derive(Clone, Debug)]
pub struct SlowRun {
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Share of the requests the slow backend answered.
    pub slow_share: f64,
}

pub fn measure(a: &SlowArgs, policy: &str) -> Result<SlowRun> {
    let mut sb = Sandbox::new("bench-slow")?;
    let table = format!(
        "vips:\n  - vip: {VIP}\n    backends: [{}]\n",
        BACKENDS
            .iter()
            .map(|(_, ip)| format!("{ip}:7000"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (id, ip) in BACKENDS {
        let ms = if id == "slow" {
            a.slow_base_ms * a.slow_factor
        } else {
            a.slow_base_ms
        };
        let ms = ms.to_string();
        sb.spawn_testsrv_with(
            id,
            &[&format!("{ip}:7000")],
            &[],
            &["--reply-delay-ms", &ms],
        )?;
    }
    let agent = Agent::start_with_args(&mut sb, &table, &["--lb-policy", policy])?;
    agent.wait_vips(1, Duration::from_secs(20))?;
    // Warm-up: every backend has a handshake average.
    sb.probe_tcp(VIP, 60)?;
    let seconds = format!("{}", a.slow_seconds);
    let parallel = a.slow_parallel.to_string();
    let v = sb.probe(&[
        "requests",
        "--to",
        VIP,
        "-n",
        "1000000",
        "--parallel",
        &parallel,
        "--seconds",
        &seconds,
    ])?;
    let requests = v["requests"].as_u64().context("requests")?;
    let slow = v["counts"]["slow"].as_u64().unwrap_or(0);
    Ok(SlowRun {
        requests,
        errors: v["errors"].as_u64().unwrap_or(0),
        p50_ms: v["p50_us"].as_f64().unwrap_or(f64::NAN) / 1e3,
        p99_ms: v["p99_us"].as_f64().unwrap_or(f64::NAN) / 1e3,
        slow_share: slow as f64 / requests.max(1) as f64,
    })
}
