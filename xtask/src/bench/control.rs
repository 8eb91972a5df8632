//! What the control-plane benchmarks (`bench marathon`, `bench dns`) share: a
//! fake Marathon state of N apps x M tasks, the agent that follows it, and
//! the run's time budget.
//!
//! Safety: everything runs in a `Sandbox` (private netns with only `lo`,
//! child cgroup given to the agent). Task addresses are 127.1.0.x and nothing
//! ever connects to them; HTTP (fake Marathon, metrics) and DNS stay on the
//! netns' loopback. Every wait has a timeout.
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
pub(crate) use l4lb_tests::bench_cluster::{
    host_of, marathon_apps as gen_apps, port_of, task_spec,
};
use l4lb_tests::{Agent, FakeMarathon, Sandbox, marathon::fake_marathon_bin};

use crate::{interrupt, preflight, util};

pub(crate) const MAX_RUNS: i64 = 20;

pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(120);
pub(crate) const TOTAL_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Release binaries (the fake Marathon too: its serving time is part of the
/// full sync), root, toolchain.
pub(crate) fn prepare() -> Result<()> {
    preflight::kernel_task(true)?;
    let bin = util::target_dir()
        .join("release")
        .join("l4lb-fake-marathon");
    // SAFETY: xtask has started no thread yet.
    unsafe { std::env::set_var("L4LB_FAKE_MARATHON_BIN", &bin) };
    if !fake_marathon_bin().is_file() {
        bail!("{} not built", bin.display());
    }
    interrupt::install();
    Ok(())
}

/// The Maglev table size the agent picks for `live` backends (slots.rs).
pub(crate) fn table_size(live: u32) -> u32 {
    const LADDER: [u32; 10] = [
        251, 503, 1009, 2003, 4001, 8009, 16007, 32003, 65537, 131_071,
    ];
    let need = live * 100;
    LADDER
        .iter()
        .copied()
        .find(|&p| p >= need)
        .unwrap_or(65_537)
}

/// `--max-slots` for `apps` services of `tasks` backends, with room for a
/// scaled app (one more task, a bigger table, two ranges while switching).
pub(crate) fn max_slots(apps: u32, tasks: u32, scaled: bool) -> u32 {
    let per = if scaled {
        table_size(tasks + 1) + table_size(tasks)
    } else {
        table_size(tasks)
    };
    let need = u64::from(apps) * u64::from(per) + 4 * u64::from(table_size(tasks + 1));
    // Round up to a multiple of 64 Ki slots; the flag's range is 251..=2^28.
    (need.div_ceil(65_536) * 65_536).clamp(1_048_576, 268_435_456) as u32
}

pub(crate) fn check_deadline(deadline: Instant) -> Result<()> {
    interrupt::check()?;
    if Instant::now() >= deadline {
        bail!("benchmark exceeded its {TOTAL_TIMEOUT:?} budget");
    }
    Ok(())
}

/// The fake Marathon's own answer time for `/v2/apps?embed=apps.tasks`
/// (curl in the netns while the agent is idle or not running): `n` samples
/// in ms, and the body's MB.
pub(crate) fn server_answer(sb: &Sandbox, m: &FakeMarathon, n: usize) -> Result<(Vec<f64>, f64)> {
    server_answer_at(sb, m, "/v2/apps?embed=apps.tasks", n)
}

/// Curl's `time_total` (ms) for `path` `n` times, and the body size (MB).
pub(crate) fn server_answer_at(
    sb: &Sandbox,
    m: &FakeMarathon,
    path: &str,
    n: usize,
) -> Result<(Vec<f64>, f64)> {
    let url = format!("{}{path}", m.url(0));
    let mut times = vec![];
    let mut size = 0.0;
    for _ in 0..n {
        let out = util::output_timeout(
            sb.in_netns("curl")
                .args(["-sS", "-o", "/dev/null", "--max-time", "60"])
                .args(["-w", "%{time_total} %{size_download} %{http_code}", &url]),
            Duration::from_secs(70),
        )?;
        let o = String::from_utf8_lossy(&out.stdout).into_owned();
        let f: Vec<&str> = o.split_whitespace().collect();
        if f.len() != 3 || f[2] != "200" {
            bail!("curl {url}: {o} {}", String::from_utf8_lossy(&out.stderr));
        }
        times.push(f[0].parse::<f64>()? * 1000.0);
        size = f[1].parse::<f64>()? / 1e6;
    }
    Ok((times, size))
}

pub(crate) fn start_agent(
    sb: &mut Sandbox,
    m: &FakeMarathon,
    slots: u32,
    extra: &[&str],
) -> Result<Agent> {
    let url = m.url(0);
    let slots = slots.to_string();
    let mut args = vec!["--marathon", &url, "--max-slots", &slots];
    args.extend_from_slice(extra);
    Agent::start_with_args(sb, "", &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(table_size(5), 503);
        assert_eq!(table_size(6), 1009);
        assert!(max_slots(10_000, 5, false) >= 5_030_000);
    }
}
