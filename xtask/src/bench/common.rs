//! Helpers the socket-path benchmarks (`peers`, `redis`, `scaling`, `all`)
//! share: one sandbox per run, commands inside it, the git revision a report
//! names.
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Sandbox, agent_bin, probe_bin};
use serde_json::Value;

use crate::{interrupt, preflight, report, util};

/// Connections per target and round / rounds: upper bounds for every flag.
pub const MAX_ITERATIONS: u32 = 100_000;
pub const MAX_ROUNDS: u32 = 50;
/// One probe run may take this long.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(300);
/// A whole `peers` or `redis` run.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// `commit abc1234` (`+ uncommitted changes` when the tree is dirty), for
/// reports that compare runs.
pub(crate) fn git_rev() -> String {
    let root = util::workspace_root();
    let rev = util::stdout(Command::new("git").arg("-C").arg(&root).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]))
    .map(|r| r.trim().to_string())
    .unwrap_or_else(|_| "?".into());
    let dirty = util::stdout(Command::new("git").arg("-C").arg(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .map(|s| !s.trim().is_empty())
    .unwrap_or(false);
    format!(
        "commit {rev}{}",
        if dirty { " + uncommitted changes" } else { "" }
    )
}

/// Runs a command (inside the sandbox, by construction of `cmd`) and fails
/// with its stderr on a non-zero exit.
pub(crate) fn run_in(cmd: &mut Command, what: &str) -> Result<String> {
    util::stdout_timeout(cmd, what, Duration::from_secs(120))
}

/// Waits until `l4lb-probe tcp --to ADDR` (in the netns, not the cgroup)
/// reads a greeting: the backend, or a proxy in front of it, is up.
pub(crate) fn wait_tcp(sb: &Sandbox, addr: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = util::output_timeout(
            sb.in_netns(probe_bin())
                .args(["tcp", "--to", addr, "-n", "1", "--timeout-ms", "500"]),
            Duration::from_secs(5),
        )?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["errors"].as_u64() == Some(0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{addr} did not answer within {timeout:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The BPF `connects` counter summed over the agent's VIPs (`stats --json`).
pub(crate) fn bpf_connects(sb: &Sandbox) -> Result<u64> {
    let out = run_in(
        sb.in_netns(agent_bin())
            .args(["stats", "--json", "--pin-root"])
            .arg(sb.pin_root()),
        "l4lb-agent stats",
    )?;
    let v: Value = serde_json::from_str(&out).context("stats --json")?;
    Ok(v["connects"].as_u64().unwrap_or(0))
}

/// The frame `bench peers` and `bench redis` share: one sandbox for the whole
/// run, the machine's load before and after it (the main noise, so the report
/// names both), the run time, and the section when `--write` asks for it.
pub(crate) fn in_one_sandbox<R>(
    sandbox: &str,
    section: &str,
    rounds: u32,
    write: bool,
    measure: impl FnOnce(&mut Sandbox, Instant) -> Result<R>,
    summarize: impl FnOnce(&R, &str, &str) -> (String, String),
) -> Result<()> {
    if write && rounds < 5 {
        bail!("--write records published numbers: use at least 5 rounds");
    }
    preflight::kernel_task(true)?;
    interrupt::install();
    let started = Instant::now();
    let deadline = started + TOTAL_TIMEOUT;
    let load_before = report::machine_line();
    let mut sb = Sandbox::new(sandbox)?;
    let result = measure(&mut sb, deadline)?;
    drop(sb);
    let (text, md) = summarize(&result, &load_before, &report::machine_line());
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if write {
        report::write_section(section, &md, &report::today())?;
    }
    Ok(())
}
