//! `cargo xtask bench marathon`: the Marathon source.
//!
//! 1. Full sync: a fake Marathon (`l4lb-fake-marathon --state`) serving N apps
//!    x M tasks in the documented host-networking shape (`VIP_0 = /app-i:80`,
//!    MESOS_TCP health check, every task healthy); a fresh agent with
//!    `--marathon URL` per run. Measured: agent start (spawn) -> the maps
//!    serving the first table (the first `table applied` line's log
//!    timestamp less its `serving_for_us`) and -> that line, the `took_us`
//!    of that apply (plan + map writes), the source's read + parse
//!    (`marathon: apps read took_ms`), and the agent's peak RSS (VmHWM)
//!    right after the apply and once the first resync's re-read has
//!    settled. Goal <= 0.5 s, <= 64 MB.
//! 2. Event -> maps: K apps loaded; E changes fired one at a time through the
//!    control API, cycling health down, health up, scale up (a new healthy
//!    task), kill of that task; after each, the next `table applied` line
//!    with `event_to_maps_us` is that event's latency. Cross-checked with the
//!    `l4lb_event_to_maps_seconds` histogram. Goal p99 <= 20 ms at 10,000
//!    apps.
//!
//! Safety: everything runs in a `Sandbox` (private netns with only `lo`,
//! child cgroup given to the agent). Task addresses are 127.1.0.x and nothing
//! ever connects to them; HTTP (fake Marathon, metrics) and DNS stay on the
//! netns' loopback. Every wait has a timeout.
use std::{
    collections::BTreeMap,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Agent, FakeMarathon, Sandbox};

use super::{
    agent_log::{
        LogTail, check_line, field, is_apply, is_read, log_time, num, unix_now, wait_line,
        wait_quiet, wait_reread_apply,
    },
    control::{
        MAX_RUNS, START_TIMEOUT, TOTAL_TIMEOUT, check_deadline, gen_apps, max_slots, prepare,
        server_answer, server_answer_at, start_agent, table_size, task_spec,
    },
    marathon_dns::{self, DnsSync},
    procfs::status_mb,
    stats::{at_most, med_range_if_many, median, percentile},
};
use crate::{report, util};

const MARATHON_SECTION: &str = "xtask bench marathon";
const MARATHON_DNS_SECTION: &str = "xtask bench marathon --dns";

pub const MAX_APPS: i64 = 50_000;
pub const MAX_TASKS: i64 = 10;
pub const MAX_EVENTS: i64 = 5_000;
/// Backends are (addr, port) pairs; the agent holds 65,536 by default.
const MAX_TASKS_TOTAL: u64 = 60_000;

const SYNC_GOAL_S: f64 = 0.5;
const RSS_GOAL_MB: f64 = 64.0;
const P99_GOAL_MS: f64 = 20.0;

/// Agent's `--marathon-debounce-ms` default (part of every event's latency).
const DEBOUNCE_MS: u64 = 20;
/// `--marathon-resync-secs` of the full-sync runs: the re-read whose overlap
/// with the held state the settled peak RSS includes.
const RESYNC_SECS: &str = "3";

/// `--marathon-timeout-ms` of the full-sync agent: the fake Marathon alone
/// needs seconds to render 10k apps on a busy 2-core box, more than the
/// default 5 s leaves the re-read that follows the first sync.
const SYNC_TIMEOUT_MS: &str = "30000";

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Clone, Debug)]
pub struct MarathonArgs {
    /// Apps in the full-sync state.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=MAX_APPS))]
    apps: u32,
    /// Tasks per app.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS))]
    tasks: u32,
    /// Apps loaded while events are fired.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=MAX_APPS))]
    event_apps: u32,
    /// Events fired one by one (health down, up, scale up, kill; cycling).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=MAX_EVENTS))]
    events: u32,
    /// Full-sync runs (a fresh agent each).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_RUNS))]
    runs: u32,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    write: bool,
    /// Full sync as operators run it: the agent also serves DNS
    /// (`--dns-listen` on the sandbox's loopback); reports the zones too.
    #[arg(long)]
    dns: bool,
}

#[derive(Clone, Debug)]
struct SyncRun {
    /// Agent spawn -> first `table applied` (log timestamp).
    wall_s: f64,
    /// Agent spawn -> the maps serve that table (less its `serving_for_us`).
    serving_s: f64,
    /// `marathon: apps read took_ms` of the read that fed it.
    read_ms: f64,
    /// `took_us` of the apply.
    apply_ms: f64,
    /// `maps ready`'s took_ms: the pinned maps created, before any program
    /// is verified (the programs' path waits for it; the read does not).
    maps_ms: f64,
    /// `programs verified and loaded`: socket_ms + packet_ms.
    programs_ms: f64,
    /// Agent spawn -> the socket hooks serve (log timestamp): `the socket
    /// hooks serve` (no packet interface here: the packet programs load
    /// after it), else `socket hooks attached`.
    hooked_s: f64,
    writes: u64,
    hwm_apply_mb: f64,
    hwm_settled_mb: f64,
    rss_settled_mb: f64,
    anon_settled_mb: f64,
    /// Failed re-reads before the reconnect re-read was applied.
    settle_failed: usize,
    /// The fake Marathon's own answer time, measured right before the run.
    server_ms: f64,
    /// With `--dns`: the first table's zones and the probe's answer.
    dns: Option<DnsSync>,
}

fn full_sync_run(
    sb: &mut Sandbox,
    m: &FakeMarathon,
    a: &MarathonArgs,
    slots: u32,
    deadline: Instant,
) -> Result<SyncRun> {
    check_deadline(deadline)?;
    let apps = a.apps;
    let mut extra = vec![
        "--marathon-timeout-ms",
        SYNC_TIMEOUT_MS,
        "--marathon-resync-secs",
        RESYNC_SECS,
    ];
    if a.dns {
        extra.extend(marathon_dns::AGENT_ARGS);
    }
    let t0 = unix_now();
    let started = Instant::now();
    let mut agent = start_agent(sb, m, slots, &extra)?;
    let result = (|| {
        let mut tail = LogTail::new(agent.log_path());
        let mut seen = vec![];
        let line = wait_line(&mut tail, &mut agent, START_TIMEOUT, &mut seen, is_apply)?;
        let detected = started.elapsed().as_secs_f64();
        let hwm_apply = status_mb(agent.pid(), "VmHWM").unwrap_or(f64::NAN);
        let added = num(&line, "added").unwrap_or(0);
        if added != u64::from(apps) {
            bail!("first apply added {added} services, expected {apps}: {line}");
        }
        let read_ms = seen
            .iter()
            .rev()
            .find(|l| is_read(l))
            .and_then(|l| num(l, "took_ms"))
            .map(|v| v as f64)
            .unwrap_or(f64::NAN);
        let wall_s = log_time(&line)
            .map(|t| t - t0)
            .filter(|w| *w > 0.0 && *w <= detected + 0.05)
            .unwrap_or(detected);
        // The resync re-reads everything while the first copy is held: the
        // steady state's peak includes that second copy.
        let settle_failed = wait_reread_apply(
            &mut tail,
            &mut agent,
            "resync",
            Duration::from_secs(90),
            Duration::from_millis(500),
        )?;
        let serving_for = num(&line, "serving_for_us").context("no serving_for_us")?;
        let dns = match a.dns {
            true => Some(marathon_dns::measure(sb, &mut agent, t0, a.tasks)?),
            false => None,
        };
        // Logged once the packet programs are in, which may come after the
        // first apply (the table serves once the socket hooks are): read
        // from the whole log, which by now covers the resync.
        let log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
        let programs = log
            .lines()
            .find(|l| l.contains("programs verified and loaded"));
        let programs_ms = programs.map_or(f64::NAN, |l| {
            (num(l, "socket_ms").unwrap_or(0) + num(l, "packet_ms").unwrap_or(0)) as f64
        });
        let maps_ms = seen
            .iter()
            .find(|l| l.contains("maps ready"))
            .and_then(|l| num(l, "took_ms"))
            .map_or(f64::NAN, |v| v as f64);
        let hooked_s = seen
            .iter()
            .find(|l| l.contains("the socket hooks serve"))
            .or_else(|| seen.iter().find(|l| l.contains("socket hooks attached")))
            .and_then(|l| log_time(l))
            .map_or(f64::NAN, |t| t - t0);
        let run = SyncRun {
            wall_s,
            serving_s: wall_s - serving_for as f64 / 1e6,
            read_ms,
            apply_ms: num(&line, "took_us").unwrap_or(0) as f64 / 1000.0,
            maps_ms,
            programs_ms,
            hooked_s,
            writes: num(&line, "writes").unwrap_or(0),
            hwm_apply_mb: hwm_apply,
            hwm_settled_mb: status_mb(agent.pid(), "VmHWM").unwrap_or(f64::NAN),
            rss_settled_mb: status_mb(agent.pid(), "VmRSS").unwrap_or(f64::NAN),
            anon_settled_mb: status_mb(agent.pid(), "RssAnon").unwrap_or(f64::NAN),
            settle_failed,
            server_ms: f64::NAN,
            dns,
        };
        Ok(run)
    })();
    let stopped = agent.stop();
    let run = result?;
    stopped?;
    Ok(run)
}

// -------------------------------------------------------------- events

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    HealthDown,
    HealthUp,
    ScaleUp,
    Kill,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::HealthDown => "health flip to unhealthy (weight 1 -> 0)",
            Kind::HealthUp => "health flip back to healthy (weight 0 -> 1)",
            Kind::ScaleUp => "scale up: new healthy task (table grows 503 -> 1009)",
            Kind::Kill => "kill that task (TASK_KILLED, backend removed)",
        }
    }
}

#[derive(Clone, Debug)]
struct EventSample {
    kind: Kind,
    e2m_ms: f64,
    read_ms: f64,
    /// The read named the apps it re-read (`apps="1"`), not `apps="all"`.
    targeted: bool,
    apply_ms: f64,
    changed: u64,
}

struct EventResult {
    samples: Vec<EventSample>,
    /// Event applies beyond the one per fired change.
    extra_applies: usize,
    /// (count, sum seconds) delta of the agent's histogram.
    histogram: Option<(u64, f64)>,
    hwm_mb: f64,
    /// The fake Marathon's own answer time (ms) and body size (MB).
    server_ms: f64,
    body_mb: f64,
}

/// splitmix64, for a reproducible choice of tasks and apps.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// `l4lb_event_to_maps_seconds` `_count` and `_sum` from the agent's
/// metrics endpoint (inside the netns).
fn histogram(sb: &Sandbox) -> Result<(u64, f64)> {
    let out = util::output_timeout(
        sb.in_netns("curl")
            .args(["-sS", "--max-time", "5", "http://127.0.0.1:62080/metrics"]),
        Duration::from_secs(10),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    match (
        get("l4lb_event_to_maps_seconds_count"),
        get("l4lb_event_to_maps_seconds_sum"),
    ) {
        (Some(c), Some(s)) => Ok((c as u64, s)),
        _ => bail!("no l4lb_event_to_maps_seconds in /metrics: {text}"),
    }
}

fn events_run(a: &MarathonArgs, deadline: Instant) -> Result<EventResult> {
    let (apps, tasks, events) = (a.event_apps, a.tasks, a.events);
    let mut sb = Sandbox::new("bmev")?;
    let state = gen_apps(apps, tasks);
    let m = FakeMarathon::start(&mut sb, 1, state)?;
    // The server's own time for what an event makes the agent read (one
    // app), 3 samples before the agent starts and 3 once the events are done
    // (the agent idle); and the full list's size, for the record.
    let one = "/v2/apps/app-0?embed=app.tasks";
    let body_mb = server_answer(&sb, &m, 1)?.1;
    let (mut times, _) = server_answer_at(&sb, &m, one, 3)?;
    let extra = match a.dns {
        true => &marathon_dns::AGENT_ARGS[..],
        false => &[],
    };
    let mut agent = start_agent(&mut sb, &m, max_slots(apps, tasks, true), extra)?;
    let result = events_with(&sb, &m, &mut agent, apps, tasks, events, deadline)
        .and_then(|r| Ok((r, server_answer_at(&sb, &m, one, 3)?.0)));
    let stopped = agent.stop();
    let (mut r, after) = result?;
    stopped?;
    times.extend(after);
    (r.server_ms, r.body_mb) = (median(&times), body_mb);
    println!(
        "events: /v2/apps?embed=apps.tasks is {body_mb:.1} MB; the fake Marathon answers one app ({one}) in {:.2} ms (curl, median of 6: {times:.2?})",
        r.server_ms
    );
    Ok(r)
}

fn events_with(
    sb: &Sandbox,
    m: &FakeMarathon,
    agent: &mut Agent,
    apps: u32,
    tasks: u32,
    events: u32,
    deadline: Instant,
) -> Result<EventResult> {
    let mut tail = LogTail::new(agent.log_path());
    let mut seen = vec![];
    let first = wait_line(&mut tail, agent, START_TIMEOUT, &mut seen, is_apply)?;
    if num(&first, "added") != Some(u64::from(apps)) {
        bail!("first apply did not add {apps} services: {first}");
    }
    // The stream attached before that read: nothing else to wait for.
    wait_quiet(
        &mut tail,
        Duration::from_millis(1000),
        Duration::from_secs(60),
    )?;
    println!("events: {apps} apps x {tasks} tasks loaded, event stream attached");

    let app_tasks = app_task_ids(m)?;

    let h0 = histogram(sb).ok();
    let mut changes = Changes {
        app_tasks,
        rng: Rng(0x4c34_4c42),
        health_task: String::new(),
        scaled_task: String::new(),
        next_task: apps * tasks,
    };
    let mut samples = Vec::with_capacity(events as usize);
    let mut extra_applies = 0;
    for i in 0..events {
        check_deadline(deadline)?;
        // Anything the previous change still caused (a late second read).
        for l in tail.lines()? {
            check_line(&l)?;
            if is_apply(&l) && field(&l, "event_to_maps_us").is_some() {
                extra_applies += 1;
            }
        }
        let kind = [Kind::HealthDown, Kind::HealthUp, Kind::ScaleUp, Kind::Kill][i as usize % 4];
        changes.fire(m, kind)?;
        let mut seen = vec![];
        let line = wait_line(&mut tail, agent, EVENT_TIMEOUT, &mut seen, |l| {
            is_apply(l) && field(l, "event_to_maps_us").is_some()
        })
        .with_context(|| format!("event {} ({kind:?})", i + 1))?;
        samples.push(sample_of(kind, &line, &seen));
        if (i + 1) % 50 == 0 {
            println!("events: {}/{events} applied", i + 1);
        }
        // Let a straggling event of this change land before the next one.
        thread::sleep(Duration::from_millis(50));
    }
    for l in wait_quiet(
        &mut tail,
        Duration::from_millis(300),
        Duration::from_secs(5),
    )? {
        if is_apply(&l) && field(&l, "event_to_maps_us").is_some() {
            extra_applies += 1;
        }
    }
    let histogram = match (h0, histogram(sb).ok()) {
        (Some((c0, s0)), Some((c1, s1))) => Some((c1 - c0, s1 - s0)),
        _ => None,
    };
    Ok(EventResult {
        samples,
        extra_applies,
        histogram,
        hwm_mb: status_mb(agent.pid(), "VmHWM").unwrap_or(f64::NAN),
        server_ms: f64::NAN,
        body_mb: f64::NAN,
    })
}

/// Task ids per app, from the fake Marathon's state (apps with tasks only).
fn app_task_ids(m: &FakeMarathon) -> Result<Vec<(String, Vec<String>)>> {
    let st = m.apps()?;
    let mut app_tasks: Vec<(String, Vec<String>)> = st["apps"]
        .as_array()
        .context("control GET /apps: no apps")?
        .iter()
        .map(|a| {
            let ids = a["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["id"].as_str().map(String::from))
                .collect();
            (a["id"].as_str().unwrap_or_default().to_string(), ids)
        })
        .collect();
    app_tasks.retain(|(_, t)| !t.is_empty());
    if app_tasks.is_empty() {
        bail!("the fake Marathon lists no tasks");
    }
    Ok(app_tasks)
}

/// The changes the event run fires, and what the next one refers to.
struct Changes {
    app_tasks: Vec<(String, Vec<String>)>,
    rng: Rng,
    /// The task whose health the last `HealthDown` flipped.
    health_task: String,
    /// The task the last `ScaleUp` started.
    scaled_task: String,
    /// The number in the next started task's id.
    next_task: u32,
}

impl Changes {
    fn fire(&mut self, m: &FakeMarathon, kind: Kind) -> Result<()> {
        let n = self.app_tasks.len() as u64;
        match kind {
            Kind::HealthDown => {
                let (_, ids) = &self.app_tasks[self.rng.below(n) as usize];
                self.health_task = ids[self.rng.below(ids.len() as u64) as usize].clone();
                m.set_health(&self.health_task, Some(false))?;
            }
            Kind::HealthUp => m.set_health(&self.health_task, Some(true))?,
            Kind::ScaleUp => {
                let (app, _) = &self.app_tasks[self.rng.below(n) as usize];
                let t = m.scale(app, &task_spec(self.next_task))?;
                self.next_task += 1;
                self.scaled_task = t["id"].as_str().context("scale: no task id")?.to_string();
            }
            Kind::Kill => m.kill_now(&self.scaled_task)?,
        }
        Ok(())
    }
}

/// One event's sample from its apply line and the lines before it.
fn sample_of(kind: Kind, line: &str, seen: &[String]) -> EventSample {
    let read = seen.iter().rev().find(|l| is_read(l));
    let read_ms = read
        .and_then(|l| num(l, "took_us").map(|us| us as f64 / 1000.0))
        .or_else(|| read.and_then(|l| num(l, "took_ms")).map(|v| v as f64))
        .unwrap_or(f64::NAN);
    EventSample {
        kind,
        e2m_ms: num(line, "event_to_maps_us").unwrap_or(0) as f64 / 1000.0,
        read_ms,
        targeted: read
            .is_some_and(|l| field(l, "apps").is_some_and(|v| v.trim_matches('"') != "all")),
        apply_ms: num(line, "took_us").unwrap_or(0) as f64 / 1000.0,
        changed: num(line, "changed").unwrap_or(0),
    }
}

// --------------------------------------------------------- marathon main

pub fn marathon(a: MarathonArgs) -> Result<()> {
    if u64::from(a.apps) * u64::from(a.tasks) > MAX_TASKS_TOTAL
        || u64::from(a.event_apps) * u64::from(a.tasks) > MAX_TASKS_TOTAL
    {
        bail!("apps x tasks must stay <= {MAX_TASKS_TOTAL} (distinct backends)");
    }
    if a.write && (a.runs < 5 || a.events < 100) {
        bail!("--write records published numbers: use at least 5 runs and 100 events");
    }
    prepare()?;
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    let started = Instant::now();

    // Full sync.
    let gen_t = Instant::now();
    let state = gen_apps(a.apps, a.tasks);
    let state_bytes = state.to_string().len();
    println!(
        "full sync: generated {} apps x {} tasks ({:.1} MB of JSON) in {:.1} s",
        a.apps,
        a.tasks,
        state_bytes as f64 / 1e6,
        gen_t.elapsed().as_secs_f64()
    );
    let slots = max_slots(a.apps, a.tasks, false);
    let mut runs = vec![];
    let body_mb;
    {
        let mut sb = Sandbox::new("bmsync")?;
        let m = FakeMarathon::start(&mut sb, 1, state)?;
        // What the agent downloads (one unmeasured GET warms the server).
        body_mb = server_answer(&sb, &m, 1)?.1;
        println!("full sync: /v2/apps?embed=apps.tasks is {body_mb:.1} MB");
        for r in 0..a.runs {
            // The server's own time, right before the run it is paired with.
            let server_ms = server_answer(&sb, &m, 1)?.0[0];
            let mut run = full_sync_run(&mut sb, &m, &a, slots, deadline)
                .with_context(|| format!("full sync run {}", r + 1))?;
            run.server_ms = server_ms;
            println!(
                "full sync run {}/{}: {:.3} s to table applied (server alone {:.0} ms; read+parse {:.0} ms, apply {:.1} ms, {} writes), VmHWM {:.1} MB at apply, {:.1} MB settled",
                r + 1,
                a.runs,
                run.wall_s,
                run.server_ms,
                run.read_ms,
                run.apply_ms,
                run.writes,
                run.hwm_apply_mb,
                run.hwm_settled_mb
            );
            if let Some(d) = &run.dns {
                println!(
                    "  zones published {:.3} s after spawn ({} records built in {:.0} ms); {} A: {} addresses",
                    d.zones_s,
                    d.records,
                    d.build_ms,
                    marathon_dns::PROBE_NAME,
                    d.answered
                );
            }
            runs.push(run);
        }
        drop(m);
        drop(sb);
    }
    let ev = events_run(&a, deadline)?;
    let commit = util::stdout(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let (text, md) = summarize_marathon(
        &a,
        &runs,
        body_mb,
        slots,
        &ev,
        &report::machine_line(),
        &commit,
    );
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        // The DNS variant is its own record: the default one stays comparable
        // with the runs before it.
        let section = if a.dns {
            MARATHON_DNS_SECTION
        } else {
            MARATHON_SECTION
        };
        report::write_section(section, &md, &report::utc_date()?)?;
    }
    Ok(())
}

const SYNC_HEADER: [&str; 2] = ["full sync", "median (min-max)"];
const EVENT_HEADER: [&str; 6] = ["event -> maps, ms", "p50", "p90", "p99", "max", "n"];

fn summarize_marathon(
    a: &MarathonArgs,
    runs: &[SyncRun],
    body_mb: f64,
    slots: u32,
    ev: &EventResult,
    machine: &str,
    commit: &str,
) -> (String, String) {
    let mut rows = sync_rows(runs);
    let (mut verdict_sync, why_sync) = sync_verdict(runs);
    let dns: Vec<DnsSync> = runs.iter().filter_map(|r| r.dns.clone()).collect();
    let dns_flags = if a.dns {
        rows.extend(marathon_dns::rows(&dns));
        verdict_sync = format!(
            "{verdict_sync}. {}",
            marathon_dns::verdict(&dns, SYNC_GOAL_S)
        );
        format!(" --dns-listen {}", marathon_dns::DNS_LISTEN)
    } else {
        String::new()
    };
    let dns_on = match a.dns {
        true => " (the agent serving DNS too)",
        false => "",
    };
    let (ev_rows, n) = event_rows(ev);
    let (breakdown, hist, verdict_ev) = event_lines(ev);
    let cmd = format!(
        "cargo xtask bench marathon --apps {} --tasks {} --event-apps {} --events {} --runs {}{}",
        a.apps,
        a.tasks,
        a.event_apps,
        a.events,
        a.runs,
        if a.dns { " --dns" } else { "" }
    );
    let setup = format!(
        "{} apps x {} tasks in the documented host-networking shape (`portDefinitions[0].labels.VIP_0 = \"/app-i:80\"`, MESOS_TCP health check, every task healthy; task hosts 127.1.0.1-250 with distinct ports, never connected to), served by `l4lb-fake-marathon --state` ({body_mb:.1} MB at `/v2/apps?embed=apps.tasks`) in the sandbox netns; a fresh agent per run with `--marathon URL --max-slots {slots} --marathon-timeout-ms {SYNC_TIMEOUT_MS} --marathon-resync-secs {RESYNC_SECS}{dns_flags}` ({} slots per service: the default 1,048,576 holds ~{} such services), release builds",
        a.apps,
        a.tasks,
        table_size(a.tasks),
        1_048_576 / table_size(a.tasks)
    );
    let reading = reading(a, runs, ev, commit);
    let text = format!(
        "Full sync ({setup})\n{}{verdict_sync}\n{why_sync}\n\nEvent -> maps ({} apps x {} tasks loaded{dns_on}, {n} changes one by one)\n{}{breakdown}\n{hist}\nagent VmHWM after the events: {:.1} MB\n{verdict_ev}\n{reading}\n{machine}\n",
        report::table(&SYNC_HEADER, &rows),
        a.event_apps,
        a.tasks,
        report::table(&EVENT_HEADER, &ev_rows),
        ev.hwm_mb
    );
    let heading = if a.dns {
        "Marathon source with DNS on: full sync, zones and event -> maps"
    } else {
        "Marathon source: full sync and event -> maps"
    };
    let markdown = format!(
        "## {heading}\n\n\
         `{cmd}` on {{date}}.\n\n\
         **Full sync**, {} runs: {setup}. Wall time is agent spawn -> the maps serving the first table (the \
         first `table applied` log line's timestamp less its `serving_for_us`, which counts from the later of \
         the map writes and the socket hooks' attach; no packet interface is attached here, so the packet \
         programs are verified after that): process start, then side by side the maps' creation, the socket \
         hooks' verification and attach, and the HTTP read (including the server's time to produce the body), the parse, VIP \
         naming, planning and the map writes; the event stream attaches before that read, so no second read \
         follows it. The `table applied` line itself comes after the grace period that precedes the cleanup. Peak RSS is the agent's VmHWM once the \
         first resync (`--marathon-resync-secs {RESYNC_SECS}` here, 60 s by default) has re-read and \
         applied everything while the first copy was held: a second copy in flight is part of the \
         steady state.\n\n{}\n{verdict_sync}.\n\n{why_sync}.\n\n\
         **Event -> maps**, one run: {} apps x {} tasks loaded{dns_on}, {n} changes fired one at a time through the \
         fake Marathon's control API (cycling: a health flip to unhealthy, back to healthy, a scale-up by \
         one healthy task, the kill of that task), each waited for before the next; the latency is the \
         agent's `event_to_maps_us` (first event received on the SSE stream -> maps written).\n\n{}\n\
         {breakdown}; {hist}; the agent's VmHWM after the events: {:.0} MB.\n\n{verdict_ev}.\n\n{reading}.\n\n\
         Machine: {machine}.\n",
        runs.len(),
        report::md_table(&SYNC_HEADER, &rows),
        a.event_apps,
        a.tasks,
        report::md_table(&EVENT_HEADER, &ev_rows),
        ev.hwm_mb,
    );
    (text, markdown)
}

/// The full sync's table: each step's median (min-max) over the runs.
fn sync_rows(runs: &[SyncRun]) -> Vec<Vec<String>> {
    let col = |f: &dyn Fn(&SyncRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    vec![
        vec![
            "agent spawn -> the maps serve the table, s".into(),
            med_range_if_many(&col(&|r| r.serving_s), 3),
        ],
        vec![
            "agent spawn -> first `table applied` (grace waited), s".into(),
            med_range_if_many(&col(&|r| r.wall_s), 3),
        ],
        vec![
            "  the fake Marathon's own answer time for the body (curl, right before each run), ms"
                .into(),
            med_range_if_many(&col(&|r| r.server_ms), 0),
        ],
        vec![
            "  to serving, minus that run's server time (agent: start, BPF load, parse, naming, plan, map writes), s".into(),
            med_range_if_many(&col(&|r| r.serving_s - r.server_ms / 1000.0), 3),
        ],
        vec![
            "  GET /v2/apps + parse as the agent saw it (`apps read took_ms`), ms".into(),
            med_range_if_many(&col(&|r| r.read_ms), 0),
        ],
        vec![
            "  plan + map writes (`took_us` of the apply), ms".into(),
            med_range_if_many(&col(&|r| r.apply_ms), 1),
        ],
        vec![
            "  pinned maps created (before the programs' verification; beside the read), ms".into(),
            med_range_if_many(&col(&|r| r.maps_ms), 0),
        ],
        vec![
            "  programs verified and loaded (socket, beside the read; + packet, at nice 19 until the table serves), ms"
                .into(),
            med_range_if_many(&col(&|r| r.programs_ms), 0),
        ],
        vec![
            "  agent spawn -> socket hooks attached (`the socket hooks serve`), s".into(),
            med_range_if_many(&col(&|r| r.hooked_s), 3),
        ],
        vec![
            "map writes in that apply".into(),
            med_range_if_many(&col(&|r| r.writes as f64), 0),
        ],
        vec![
            "peak RSS (VmHWM) at the first apply, MB".into(),
            med_range_if_many(&col(&|r| r.hwm_apply_mb), 1),
        ],
        vec![
            format!("peak RSS (VmHWM) after the first full resync re-read ({RESYNC_SECS} s), MB"),
            med_range_if_many(&col(&|r| r.hwm_settled_mb), 1),
        ],
        vec![
            "  RSS then: total / anonymous / file + shmem (binary, libraries, mapped maps), MB".into(),
            format!(
                "{:.1} / {:.1} / {:.1}",
                median(&col(&|r| r.rss_settled_mb)),
                median(&col(&|r| r.anon_settled_mb)),
                median(&col(&|r| r.rss_settled_mb - r.anon_settled_mb))
            ),
        ],
    ]
}

/// The full sync's verdicts, and where its time went.
fn sync_verdict(runs: &[SyncRun]) -> (String, String) {
    let col = |f: &dyn Fn(&SyncRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let serving = col(&|r| r.serving_s);
    let server = col(&|r| r.server_ms);
    let server_ms = median(&server);
    let own = col(&|r| r.serving_s - r.server_ms / 1000.0);
    let read = col(&|r| r.read_ms);
    let apply = col(&|r| r.apply_ms);
    let hwm = col(&|r| r.hwm_settled_mb);
    let settle_failed: usize = runs.iter().map(|r| r.settle_failed).sum();
    let (w, o, h) = (median(&serving), median(&own), median(&hwm));
    let verdict_sync = format!(
        "full sync {w:.2} s to the maps serving (goal <= {SYNC_GOAL_S:.1} s): {}; without the fake Marathon's time to produce the body (median {:.2} s) {o:.2} s: {}. Peak RSS {h:.0} MB (goal <= {RSS_GOAL_MB:.0} MB): {}",
        at_most(w, SYNC_GOAL_S),
        server_ms / 1000.0,
        at_most(o, SYNC_GOAL_S),
        at_most(h, RSS_GOAL_MB),
    );
    let why_sync = format!(
        "Where the time goes (medians): two paths run side by side from the agent's start, and the table serves when both are done: (1) the read + parse {:.2} s (the server alone takes {:.2} s), then plan + map writes {:.2} s; (2) the maps' creation {:.2} s, then the programs' verification and load (the packet programs' after the socket hooks serve, at nice 19 until the table does), {:.2} s, the socket hooks attached {:.2} s after spawn. Serving came {:.2} s after spawn{}",
        median(&read) / 1000.0,
        server_ms / 1000.0,
        median(&apply) / 1000.0,
        median(&col(&|r| r.maps_ms)) / 1000.0,
        median(&col(&|r| r.programs_ms)) / 1000.0,
        median(&col(&|r| r.hooked_s)),
        w,
        if settle_failed > 0 {
            format!("; {settle_failed} re-reads failed before the resync re-read was applied")
        } else {
            String::new()
        }
    );
    (verdict_sync, why_sync)
}

/// Events sorted by their time to the maps, in ms.
fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// `label, p50, p90, p99, max, n` of sorted latencies.
fn percentile_row(label: String, v: &[f64]) -> Vec<String> {
    vec![
        label,
        format!("{:.1}", percentile(v, 50.0)),
        format!("{:.1}", percentile(v, 90.0)),
        format!("{:.1}", percentile(v, 99.0)),
        format!("{:.1}", v.last().copied().unwrap_or(f64::NAN)),
        v.len().to_string(),
    ]
}

/// Event -> maps latencies less the fake Marathon's median answer time.
fn own_latencies(ev: &EventResult) -> Vec<f64> {
    sorted(ev.samples.iter().map(|s| s.e2m_ms - ev.server_ms).collect())
}

/// The event -> maps table (all events, by kind, and without the server's
/// time) and how many events it holds.
fn event_rows(ev: &EventResult) -> (Vec<Vec<String>>, usize) {
    let e2m = sorted(ev.samples.iter().map(|s| s.e2m_ms).collect());
    let mut rows = vec![percentile_row("all events".into(), &e2m)];
    let mut by_kind: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
    for s in &ev.samples {
        by_kind.entry(s.kind).or_default().push(s.e2m_ms);
    }
    for (k, v) in by_kind {
        rows.push(percentile_row(format!("  {}", k.label()), &sorted(v)));
    }
    rows.push(percentile_row(
        format!(
            "all events minus the fake Marathon's median {:.2} ms to answer one app (approximate)",
            ev.server_ms
        ),
        &own_latencies(ev),
    ));
    (rows, e2m.len())
}

/// Per event: where the time goes, the agent's own histogram, the verdict.
fn event_lines(ev: &EventResult) -> (String, String, String) {
    let e2m = sorted(ev.samples.iter().map(|s| s.e2m_ms).collect());
    let n = e2m.len();
    let mean = e2m.iter().sum::<f64>() / n.max(1) as f64;
    let reads: Vec<f64> = ev.samples.iter().map(|s| s.read_ms).collect();
    let applies: Vec<f64> = ev.samples.iter().map(|s| s.apply_ms).collect();
    let changed_ok = ev.samples.iter().filter(|s| s.changed == 1).count();
    let targeted = ev.samples.iter().filter(|s| s.targeted).count();
    let p99 = percentile(&e2m, 99.0);
    let p99_own = percentile(&own_latencies(ev), 99.0);
    let breakdown = format!(
        "Per event (medians): a {:.0} ms window (a quarter of the {DEBOUNCE_MS} ms `--marathon-debounce-ms` default) gathers the change's burst of events, then `GET /v2/apps/{{id}}` of the app they name + its decode + the catalog brought up to date by that app's part {:.2} ms as the agent saw it (the fake Marathon alone answers one app in {:.2} ms), plan + map writes {:.2} ms; mean {mean:.1} ms. {targeted}/{n} changes were read as the one app they named (the full {:.1} MB list was not re-read); {changed_ok}/{n} applies changed exactly one service; {} extra event applies",
        DEBOUNCE_MS as f64 / 4.0,
        median(&reads),
        ev.server_ms,
        median(&applies),
        ev.body_mb,
        ev.extra_applies
    );
    let hist = match ev.histogram {
        Some((c, s)) if c > 0 => format!(
            "the agent's `l4lb_event_to_maps_seconds` histogram counted {c} observations over the run, mean {:.1} ms",
            s / c as f64 * 1000.0
        ),
        _ => "histogram not read".into(),
    };
    let verdict_ev = format!(
        "event -> maps p99 {p99:.1} ms (goal <= {P99_GOAL_MS:.0} ms): {}; without the server's answer time {p99_own:.1} ms: {}. dcos-net polls every 2 s: p99 is {:.1}x faster than that poll period",
        at_most(p99, P99_GOAL_MS),
        at_most(p99_own, P99_GOAL_MS),
        2000.0 / p99.max(0.001)
    );
    (breakdown, hist, verdict_ev)
}

/// How to read the numbers: what an event and a full sync do.
fn reading(a: &MarathonArgs, runs: &[SyncRun], ev: &EventResult, commit: &str) -> String {
    let col = |f: &dyn Fn(&SyncRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let reads: Vec<f64> = ev.samples.iter().map(|s| s.read_ms).collect();
    let applies: Vec<f64> = ev.samples.iter().map(|s| s.apply_ms).collect();
    format!(
        "Reading the numbers (agent at commit {commit}): an event that names its app (task status and \
         health changes, app definition changes, and `deployment_success` through the apps its plan \
         lists) makes the agent re-read that app alone (`GET /v2/apps/{{id}}?embed=app.tasks`) and put \
         its decoded share in place of the old one in the kept catalog, which re-merges only the VIPs \
         that app declares, before and after (`IncrementalCatalog`); the services go to the planner \
         as a persistent map, whose diff with the last one planned skips what the two share; an app \
         that did not change sends no update at all. A full `/v2/apps` re-read is left \
         for the start, a stream reconnect, the 60 s resync, events that name no app (or more than 16 \
         in one window) and a failed app read. What still grows with the cluster per event is the \
         catalog's task list, a pointer per task (within the {:.2} ms read at {} apps), and the set of \
         VIPs the maps serve handed to the discovery API ({:.2} ms of plan + map writes). The full sync's RSS is mostly heap (anonymous {:.0} MB of {:.0} MB): the decoded \
         share of every app and the catalog kept from them, with the Maglev tables while they are \
         written; the first resync's re-read replaces each app's share in place (the min-max of the \
         settled peak). After the events at {} apps the agent's peak was {:.0} MB",
        median(&reads),
        a.event_apps,
        median(&applies),
        median(&col(&|r| r.anon_settled_mb)),
        median(&col(&|r| r.rss_settled_mb)),
        a.event_apps,
        ev.hwm_mb,
    )
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    fn run(s: f64, mb: f64, dns: bool) -> SyncRun {
        SyncRun {
            wall_s: s + 0.3,
            serving_s: s,
            read_ms: 300.0 * s,
            apply_ms: 200.0 * s,
            maps_ms: 90.0,
            programs_ms: 240.0,
            hooked_s: 0.3,
            writes: 180_000,
            hwm_apply_mb: mb,
            hwm_settled_mb: mb + 10.0,
            rss_settled_mb: mb + 5.0,
            anon_settled_mb: mb,
            settle_failed: 1,
            server_ms: 90.0,
            dns: dns.then_some(DnsSync {
                zones_s: s + 0.5,
                build_ms: 400.0 * s,
                records: 559,
                answered: 5,
            }),
        }
    }

    /// The whole report for fixed runs: any change to its text is deliberate
    /// (on a mismatch the new text is in /tmp/l4lb-marathon-summary.txt).
    #[test]
    fn summary_text_is_stable() {
        let got = summary(false);
        let want = include_str!("testdata/marathon_summary.txt");
        if got != want {
            let _ = std::fs::write("/tmp/l4lb-marathon-summary.txt", &got);
        }
        assert_eq!(got, want);
    }

    /// The same with `--dns`: the zones' rows and verdict (on a mismatch the
    /// new text is in /tmp/l4lb-marathon-dns-summary.txt).
    #[test]
    fn dns_summary_text_is_stable() {
        let got = summary(true);
        let want = include_str!("testdata/marathon_dns_summary.txt");
        if got != want {
            let _ = std::fs::write("/tmp/l4lb-marathon-dns-summary.txt", &got);
        }
        assert_eq!(got, want);
    }

    fn summary(dns: bool) -> String {
        let a = MarathonArgs {
            apps: 100,
            tasks: 5,
            event_apps: 100,
            events: 4,
            runs: 2,
            write: false,
            dns,
        };
        let kinds = [Kind::HealthDown, Kind::HealthUp, Kind::ScaleUp, Kind::Kill];
        let ev = EventResult {
            samples: kinds
                .iter()
                .enumerate()
                .map(|(i, &kind)| EventSample {
                    kind,
                    e2m_ms: 5.0 + 10.0 * i as f64,
                    read_ms: 1.5,
                    targeted: i != 2,
                    apply_ms: 0.5,
                    changed: 1,
                })
                .collect(),
            extra_applies: 1,
            histogram: Some((4, 0.08)),
            hwm_mb: 70.0,
            server_ms: 0.4,
            body_mb: 0.5,
        };
        let runs = [run(0.45, 40.0, dns), run(0.7, 80.0, dns)];
        let (text, md) = summarize_marathon(&a, &runs, 0.5, 4096, &ev, "MACHINE", "abc1234");
        format!("{text}\n----\n{md}")
    }
}
