//! `cargo xtask bench marathon --dns`: the full sync as an operator runs it,
//! with the agent serving DNS (`--dns-listen` on the sandbox's loopback).
//!
//! Per run, beside the maps' numbers: agent spawn -> the first `zones
//! published` line (the zones of the first table), that build's `took_us`
//! and record count, and whether an A query for one app's name, made once
//! the run settled, answers with every task's address.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Agent, Sandbox};

use super::{
    agent_log::{field, log_time, num},
    knot,
    stats::{at_most, med_range_if_many, median},
};

/// The agent's DNS listener in the bench's netns (loopback only).
pub const DNS_LISTEN: &str = "127.0.0.1:5353";
/// The A name probed once the sync settled: the first generated app's.
pub const PROBE_NAME: &str = "app-0.marathon.mesos";
/// How long the first table's zones may take to appear.
const ZONES_TIMEOUT: Duration = Duration::from_secs(120);

/// One run's DNS side.
#[derive(Clone, Debug)]
pub struct DnsSync {
    /// Agent spawn -> the first `zones published` line (log timestamp).
    pub zones_s: f64,
    /// `took_us` of that build, in ms.
    pub build_ms: f64,
    pub records: u64,
    /// Addresses in the probe's answer (the app's task count when right).
    pub answered: usize,
}

/// The agent's extra arguments for a DNS run.
pub const AGENT_ARGS: [&str; 2] = ["--dns-listen", DNS_LISTEN];

/// Waits for the first table's zones in the agent's log, then asks for
/// `PROBE_NAME`; `t0` is the agent's spawn (unix seconds).
pub fn measure(sb: &Sandbox, agent: &mut Agent, t0: f64, tasks: u32) -> Result<DnsSync> {
    let line = first_zones_line(agent)?;
    let zones_s = log_time(&line)
        .map(|t| t - t0)
        .context("`zones published` line without a timestamp")?;
    let answer = knot::dig(sb, DNS_LISTEN, PROBE_NAME, "A")?;
    let answered = answer.lines().filter(|l| !l.trim().is_empty()).count();
    if answered != tasks as usize {
        bail!("{PROBE_NAME} A answered {answered} addresses, expected {tasks}: {answer}");
    }
    Ok(DnsSync {
        zones_s,
        build_ms: num(&line, "took_us").unwrap_or(0) as f64 / 1000.0,
        records: num(&line, "records").unwrap_or(0),
        answered,
    })
}

/// The first `zones published` line of the agent's log, waited for.
fn first_zones_line(agent: &mut Agent) -> Result<String> {
    let deadline = Instant::now() + ZONES_TIMEOUT;
    loop {
        let log = agent.log();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("zones published") && field(l, "records").is_some())
        {
            return Ok(l.to_string());
        }
        if !agent.is_running() {
            bail!("agent exited before publishing zones; log:\n{log}");
        }
        if Instant::now() >= deadline {
            bail!("no `zones published` within {ZONES_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The DNS rows of the full-sync table (median (min-max) over the runs).
pub fn rows(dns: &[DnsSync]) -> Vec<Vec<String>> {
    let col = |f: &dyn Fn(&DnsSync) -> f64| dns.iter().map(f).collect::<Vec<f64>>();
    vec![
        vec![
            "agent spawn -> the first table's DNS zones published (`zones published`), s".into(),
            med_range_if_many(&col(&|d| d.zones_s), 3),
        ],
        vec![
            "  zone build for that table (`took_us` of `zones published`), ms".into(),
            med_range_if_many(&col(&|d| d.build_ms), 0),
        ],
        vec![
            "  records in those zones".into(),
            med_range_if_many(&col(&|d| d.records as f64), 0),
        ],
    ]
}

/// The DNS verdict: the zones against the full-sync goal, and the probe.
pub fn verdict(dns: &[DnsSync], goal_s: f64) -> String {
    let zones = median(&dns.iter().map(|d| d.zones_s).collect::<Vec<_>>());
    let build = median(&dns.iter().map(|d| d.build_ms).collect::<Vec<_>>());
    let records = median(&dns.iter().map(|d| d.records as f64).collect::<Vec<_>>());
    let per_record_us = build * 1000.0 / records.max(1.0);
    let answered = dns.iter().map(|d| d.answered).min().unwrap_or(0);
    format!(
        "With DNS on: the first table's zones published {zones:.2} s after spawn (the full-sync goal <= {goal_s:.1} s: {}), their build {build:.0} ms for {records:.0} records ({per_record_us:.2} us a record); `{PROBE_NAME}` A answered with {answered} addresses in each of {} runs once the sync settled",
        at_most(zones, goal_s),
        dns.len()
    )
}
