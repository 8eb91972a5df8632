//! Control-plane benchmarks: `cargo xtask bench marathon` and `bench dns`.
//!
//! `bench marathon` (issue 3):
//! 1. Full sync: a fake Marathon (`l4lb-fake-marathon --state`) serving N apps
//!    x M tasks in the documented host-networking shape (`VIP_0 = /app-i:80`,
//!    MESOS_TCP health check, every task healthy); a fresh agent with
//!    `--marathon URL` per run. Measured: agent start (spawn) -> first
//!    `table applied` line (its log timestamp), the `took_us` of that apply
//!    (plan + map writes), the source's read + parse (`marathon: apps read
//!    took_ms`), and the agent's peak RSS (VmHWM) right after the apply and
//!    once the event stream's reconnect re-read has settled. Goal <= 1 s,
//!    <= 100 MB.
//! 2. Event -> maps: K apps loaded; E changes fired one at a time through the
//!    control API, cycling health down, health up, scale up (a new healthy
//!    task), kill of that task; after each, the next `table applied` line
//!    with `event_to_maps_us` is that event's latency. Cross-checked with the
//!    `l4lb_event_to_maps_seconds` histogram. Goal p99 <= 50 ms.
//!
//! `bench dns` (issue 4): the agent on a fake Marathon (100 apps x 3 tasks)
//! with `--dns-listen 127.0.0.1:5353`; dnsperf in the sandbox netns with
//! A (`app-i.marathon.mesos`) and SRV (`_app-i._tcp.marathon.mesos`) query
//! files; qps, loss, latency, and qps per CPU-second the agent consumed
//! (utime + stime from /proc/PID/stat over the run). Goal >= 50,000 qps/core.
//!
//! Safety: everything runs in a `Sandbox` (private netns with only `lo`,
//! child cgroup given to the agent). Task addresses are 127.1.0.x and nothing
//! ever connects to them; HTTP (fake Marathon, metrics) and DNS stay on the
//! netns' loopback. Every wait has a timeout, every dnsperf run is bounded by
//! `-l` (time) and `-n` (passes over the query file) and a kill timeout.
use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{
    Agent, FakeMarathon, Sandbox, TaskSpec,
    marathon::{fake_marathon_bin, model},
};
use serde_json::{Value, json};

use crate::{interrupt, preflight, report, util};

const MARATHON_SECTION: &str = "xtask bench marathon";
const DNS_SECTION: &str = "xtask bench dns";

pub const MAX_APPS: i64 = 50_000;
pub const MAX_TASKS: i64 = 10;
pub const MAX_EVENTS: i64 = 5_000;
pub const MAX_RUNS: i64 = 20;
pub const MAX_SECONDS: i64 = 60;
/// Backends are (addr, port) pairs; the agent holds 65,536 by default.
const MAX_TASKS_TOTAL: u64 = 60_000;

const SYNC_GOAL_S: f64 = 1.0;
const RSS_GOAL_MB: f64 = 100.0;
const P99_GOAL_MS: f64 = 50.0;
const QPS_CORE_GOAL: f64 = 50_000.0;

/// Agent hosts the tasks are spread over: 127.1.0.1 ..= 127.1.0.250.
const AGENT_HOSTS: u32 = 250;
const DNS_LISTEN: &str = "127.0.0.1:5353";
const DNS_APPS: u32 = 100;
const DNS_TASKS: u32 = 3;
/// dnsperf: simulated clients (sockets), threads, outstanding queries.
const DNSPERF_CLIENTS: &str = "8";
const DNSPERF_THREADS: &str = "1";
const DNSPERF_OUTSTANDING: &str = "200";
/// Agent's `--marathon-debounce-ms` default (part of every event's latency).
const DEBOUNCE_MS: u64 = 20;
/// `--marathon-resync-secs` of the full-sync runs: the re-read whose overlap
/// with the held state the settled peak RSS includes.
const RESYNC_SECS: &str = "3";

/// `--marathon-timeout-ms` of the full-sync agent: the fake Marathon alone
/// needs seconds to render 10k apps on a busy 2-core box, more than the
/// default 5 s leaves the re-read that follows the first sync.
const SYNC_TIMEOUT_MS: &str = "30000";

const START_TIMEOUT: Duration = Duration::from_secs(120);
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(40 * 60);

#[derive(clap::Args, Clone, Debug)]
pub struct MarathonArgs {
    /// Apps in the full-sync state.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=MAX_APPS))]
    apps: u32,
    /// Tasks per app.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS))]
    tasks: u32,
    /// Apps loaded while events are fired.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=MAX_APPS))]
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
}

#[derive(clap::Args, Clone, Debug)]
pub struct DnsArgs {
    /// Seconds of dnsperf per query type and run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=MAX_SECONDS))]
    seconds: u32,
    /// Runs per query type (A and SRV alternate).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=MAX_RUNS))]
    runs: u32,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    write: bool,
}

/// Release binaries (the fake Marathon too: its serving time is part of the
/// full sync), root, toolchain.
fn prepare() -> Result<()> {
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

// ------------------------------------------------------------------ state

fn host_of(b: u32) -> String {
    format!("127.1.0.{}", b % AGENT_HOSTS + 1)
}

fn port_of(b: u32) -> u16 {
    (20_000 + b / AGENT_HOSTS) as u16
}

/// Task number `b` (unique over the whole state): a healthy task on one of
/// the 250 agent hosts, with a host port that makes (host, port) unique.
fn task_spec(b: u32) -> TaskSpec {
    TaskSpec::new(&host_of(b), port_of(b)).alive(Some(true))
}

/// `{"apps": [/app-0 … /app-(n-1)]}`, `tasks` healthy tasks each.
fn gen_apps(apps: u32, tasks: u32) -> Value {
    let list: Vec<Value> = (0..apps)
        .map(|i| {
            let specs: Vec<TaskSpec> = (0..tasks).map(|j| task_spec(i * tasks + j)).collect();
            model::host_app(&format!("/app-{i}"), &format!("/app-{i}:80"), &specs, true)
        })
        .collect();
    json!({ "apps": list })
}

/// The Maglev table size the agent picks for `live` backends (slots.rs).
fn table_size(live: u32) -> u32 {
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
fn max_slots(apps: u32, tasks: u32, scaled: bool) -> u32 {
    let per = if scaled {
        table_size(tasks + 1) + table_size(tasks)
    } else {
        table_size(tasks)
    };
    let need = u64::from(apps) * u64::from(per) + 4 * u64::from(table_size(tasks + 1));
    // Round up to a multiple of 64 Ki slots; the flag's range is 251..=2^28.
    (need.div_ceil(65_536) * 65_536).clamp(1_048_576, 268_435_456) as u32
}

// ------------------------------------------------------------ agent log

/// The agent's log, read incrementally (complete lines only).
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
        }
    }

    fn lines(&mut self) -> Result<Vec<String>> {
        let mut f = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut out = vec![];
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            out.push(strip_ansi(line.trim_end()));
        }
        Ok(out)
    }
}

/// The log without terminal colour codes (`ESC [ … letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=value` of a tracing line (`key="quoted value"` too).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.split('"').next();
    }
    rest.split_whitespace().next()
}

fn num(line: &str, key: &str) -> Option<u64> {
    field(line, key)?.parse().ok()
}

/// Unix seconds of the line's leading RFC 3339 UTC timestamp
/// (`2026-11-26T10:00:00.123456Z`, tracing-subscriber's default).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    // days_from_civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn is_apply(l: &str) -> bool {
    l.contains("table applied")
}

fn is_read(l: &str) -> bool {
    l.contains("marathon: apps read")
}

/// Lines that mean the run is not measuring what it claims.
fn check_line(l: &str) -> Result<()> {
    for bad in [
        "not applied:",
        "adopted the table",
        "keeping the previous table",
        "read failed",
        " ERROR ",
    ] {
        if l.contains(bad) {
            bail!("agent log: {l}");
        }
    }
    Ok(())
}

// ------------------------------------------------------------- /proc

/// A `kB` field of /proc/PID/status, in MB (10^6 bytes).
fn status_mb(pid: u32, key: &str) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: f64 = v.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024.0 / 1e6)
    })
}

/// utime + stime of every thread of PID, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state (3).
    let rest = &s[s.rfind(')').context("no ) in stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (ut, st): (f64, f64) = (f[11].parse()?, f[12].parse()?);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ut + st) / hz)
}

// ------------------------------------------------------------- helpers

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// `median (min-max)` with `prec` decimals.
fn mmm(v: &[f64], prec: usize) -> String {
    let (lo, hi) = min_max(v);
    if v.len() < 2 {
        return format!("{:.prec$}", median(v));
    }
    format!("{:.prec$} ({lo:.prec$}-{hi:.prec$})", median(v))
}

fn check_deadline(deadline: Instant) -> Result<()> {
    interrupt::check()?;
    if Instant::now() >= deadline {
        bail!("benchmark exceeded its {TOTAL_TIMEOUT:?} budget");
    }
    Ok(())
}

/// Reads the log until `pred` matches a line (returned with every line seen
/// on the way), failing on a line [`check_line`] rejects or after `timeout`.
fn wait_line(
    tail: &mut LogTail,
    agent: &mut Agent,
    timeout: Duration,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        for l in tail.lines()? {
            check_line(&l)?;
            let hit = pred(&l);
            seen.push(l.clone());
            if hit {
                return Ok(l);
            }
        }
        if !agent.is_running() {
            bail!("agent exited; log:\n{}", agent.log());
        }
        if Instant::now() >= deadline {
            bail!(
                "no matching agent log line within {timeout:?}; last lines:\n{}",
                seen[seen.len().saturating_sub(20)..].join("\n")
            );
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until no apply or read line has appeared for `quiet` (at most `max`).
fn wait_quiet(tail: &mut LogTail, quiet: Duration, max: Duration) -> Result<Vec<String>> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut seen = vec![];
    while last.elapsed() < quiet && start.elapsed() < max {
        for l in tail.lines()? {
            check_line(&l)?;
            if is_apply(&l) || is_read(&l) {
                last = Instant::now();
            }
            seen.push(l);
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(seen)
}

/// Waits for the apply of a full re-read with this trigger (`resync`), then
/// for `quiet` without reads or applies. Returns the failed reads seen
/// meanwhile (the source retries them).
fn wait_reread_apply(
    tail: &mut LogTail,
    agent: &mut Agent,
    trigger: &str,
    timeout: Duration,
    quiet: Duration,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let mut failed = 0;
    'outer: loop {
        for l in tail.lines()? {
            if l.contains("read failed") {
                println!("  (agent: {})", &l[l.find("marathon:").unwrap_or(0)..]);
                failed += 1;
                continue;
            }
            check_line(&l)?;
            if is_apply(&l) && field(&l, "trigger").is_some_and(|t| t.contains(trigger)) {
                break 'outer;
            }
        }
        if !agent.is_running() {
            bail!("agent exited; log:\n{}", agent.log());
        }
        if Instant::now() >= deadline {
            bail!("no apply of a {trigger} re-read within {timeout:?} ({failed} failed reads)");
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(5));
    }
    wait_quiet(tail, quiet, Duration::from_secs(30))?;
    Ok(failed)
}

/// The fake Marathon's own answer time for `/v2/apps?embed=apps.tasks`
/// (curl in the netns while the agent is idle or not running): `n` samples
/// in ms, and the body's MB.
fn server_answer(sb: &Sandbox, m: &FakeMarathon, n: usize) -> Result<(Vec<f64>, f64)> {
    server_answer_at(sb, m, "/v2/apps?embed=apps.tasks", n)
}

/// Curl's `time_total` (ms) for `path` `n` times, and the body size (MB).
fn server_answer_at(
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

fn start_agent(sb: &mut Sandbox, m: &FakeMarathon, slots: u32, extra: &[&str]) -> Result<Agent> {
    let url = m.url(0);
    let slots = slots.to_string();
    let mut args = vec!["--marathon", &url, "--max-slots", &slots];
    args.extend_from_slice(extra);
    Agent::start_with_args(sb, "", &args)
}

// ----------------------------------------------------------- full sync

#[derive(Clone, Debug)]
struct SyncRun {
    /// Agent spawn -> first `table applied` (log timestamp).
    wall_s: f64,
    /// `marathon: apps read took_ms` of the read that fed it.
    read_ms: f64,
    /// `took_us` of the apply.
    apply_ms: f64,
    writes: u64,
    hwm_apply_mb: f64,
    hwm_settled_mb: f64,
    rss_settled_mb: f64,
    anon_settled_mb: f64,
    /// Failed re-reads before the reconnect re-read was applied.
    settle_failed: usize,
    /// The fake Marathon's own answer time, measured right before the run.
    server_ms: f64,
}

fn full_sync_run(
    sb: &mut Sandbox,
    m: &FakeMarathon,
    apps: u32,
    slots: u32,
    deadline: Instant,
) -> Result<SyncRun> {
    check_deadline(deadline)?;
    let t0 = unix_now();
    let started = Instant::now();
    let mut agent = start_agent(
        sb,
        m,
        slots,
        &[
            "--marathon-timeout-ms",
            SYNC_TIMEOUT_MS,
            "--marathon-resync-secs",
            RESYNC_SECS,
        ],
    )?;
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
        let run = SyncRun {
            wall_s,
            read_ms,
            apply_ms: num(&line, "took_us").unwrap_or(0) as f64 / 1000.0,
            writes: num(&line, "writes").unwrap_or(0),
            hwm_apply_mb: hwm_apply,
            hwm_settled_mb: status_mb(agent.pid(), "VmHWM").unwrap_or(f64::NAN),
            rss_settled_mb: status_mb(agent.pid(), "VmRSS").unwrap_or(f64::NAN),
            anon_settled_mb: status_mb(agent.pid(), "RssAnon").unwrap_or(f64::NAN),
            settle_failed,
            server_ms: f64::NAN,
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

fn events_run(apps: u32, tasks: u32, events: u32, deadline: Instant) -> Result<EventResult> {
    let mut sb = Sandbox::new("bmev")?;
    let state = gen_apps(apps, tasks);
    let m = FakeMarathon::start(&mut sb, 1, state)?;
    // The server's own time for what an event makes the agent read (one
    // app), 3 samples before the agent starts and 3 once the events are done
    // (the agent idle); and the full list's size, for the record.
    let one = "/v2/apps/app-0?embed=app.tasks";
    let body_mb = server_answer(&sb, &m, 1)?.1;
    let (mut times, _) = server_answer_at(&sb, &m, one, 3)?;
    let mut agent = start_agent(&mut sb, &m, max_slots(apps, tasks, true), &[])?;
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

    // Task ids per app, from the server's state.
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

    let h0 = histogram(sb).ok();
    let mut rng = Rng(0x4c34_4c42);
    let mut samples = Vec::with_capacity(events as usize);
    let mut extra_applies = 0;
    let mut health_task = String::new();
    let mut scaled_task = String::new();
    let mut next_task = apps * tasks;
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
        match kind {
            Kind::HealthDown => {
                let (_, ids) = &app_tasks[rng.below(app_tasks.len() as u64) as usize];
                health_task = ids[rng.below(ids.len() as u64) as usize].clone();
                m.set_health(&health_task, Some(false))?;
            }
            Kind::HealthUp => m.set_health(&health_task, Some(true))?,
            Kind::ScaleUp => {
                let (app, _) = &app_tasks[rng.below(app_tasks.len() as u64) as usize];
                let t = m.scale(app, &task_spec(next_task))?;
                next_task += 1;
                scaled_task = t["id"].as_str().context("scale: no task id")?.to_string();
            }
            Kind::Kill => m.kill_now(&scaled_task)?,
        }
        let mut seen = vec![];
        let line = wait_line(&mut tail, agent, EVENT_TIMEOUT, &mut seen, |l| {
            is_apply(l) && field(l, "event_to_maps_us").is_some()
        })
        .with_context(|| format!("event {} ({kind:?})", i + 1))?;
        let read = seen.iter().rev().find(|l| is_read(l));
        let read_ms = read
            .and_then(|l| num(l, "took_us").map(|us| us as f64 / 1000.0))
            .or_else(|| read.and_then(|l| num(l, "took_ms")).map(|v| v as f64))
            .unwrap_or(f64::NAN);
        samples.push(EventSample {
            kind,
            e2m_ms: num(&line, "event_to_maps_us").unwrap_or(0) as f64 / 1000.0,
            read_ms,
            targeted: read
                .is_some_and(|l| field(l, "apps").is_some_and(|v| v.trim_matches('"') != "all")),
            apply_ms: num(&line, "took_us").unwrap_or(0) as f64 / 1000.0,
            changed: num(&line, "changed").unwrap_or(0),
        });
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
            let mut run = full_sync_run(&mut sb, &m, a.apps, slots, deadline)
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
            runs.push(run);
        }
        drop(m);
        drop(sb);
    }
    let ev = events_run(a.event_apps, a.tasks, a.events, deadline)?;
    let (text, md) = summarize_marathon(&a, &runs, body_mb, slots, &ev, &report::machine_line());
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        report::write_section(MARATHON_SECTION, &md, &report::utc_date()?)?;
    }
    Ok(())
}

fn summarize_marathon(
    a: &MarathonArgs,
    runs: &[SyncRun],
    body_mb: f64,
    slots: u32,
    ev: &EventResult,
    machine: &str,
) -> (String, String) {
    let col = |f: &dyn Fn(&SyncRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let wall = col(&|r| r.wall_s);
    let server = col(&|r| r.server_ms);
    let server_ms = median(&server);
    let own = col(&|r| r.wall_s - r.server_ms / 1000.0);
    let read = col(&|r| r.read_ms);
    let apply = col(&|r| r.apply_ms);
    let hwm = col(&|r| r.hwm_settled_mb);
    let settle_failed: usize = runs.iter().map(|r| r.settle_failed).sum();
    let header = ["full sync", "median (min-max)"];
    let rows = vec![
        vec![
            "agent spawn -> first `table applied`, s".into(),
            mmm(&wall, 3),
        ],
        vec![
            "  the fake Marathon's own answer time for the body (curl, right before each run), ms"
                .into(),
            mmm(&server, 0),
        ],
        vec![
            "  wall minus that run's server time (agent: start, BPF load, parse, naming, plan, map writes), s".into(),
            mmm(&own, 3),
        ],
        vec![
            "  GET /v2/apps + parse as the agent saw it (`apps read took_ms`), ms".into(),
            mmm(&read, 0),
        ],
        vec![
            "  plan + map writes (`took_us` of the apply), ms".into(),
            mmm(&apply, 1),
        ],
        vec![
            "map writes in that apply".into(),
            mmm(&col(&|r| r.writes as f64), 0),
        ],
        vec![
            "peak RSS (VmHWM) at the first apply, MB".into(),
            mmm(&col(&|r| r.hwm_apply_mb), 1),
        ],
        vec![
            format!("peak RSS (VmHWM) after the first full resync re-read ({RESYNC_SECS} s), MB"),
            mmm(&hwm, 1),
        ],
        vec![
            "  RSS then: total / anonymous / file + shmem (binary, mmap'd slots), MB".into(),
            format!(
                "{:.1} / {:.1} / {:.1}",
                median(&col(&|r| r.rss_settled_mb)),
                median(&col(&|r| r.anon_settled_mb)),
                median(&col(&|r| r.rss_settled_mb - r.anon_settled_mb))
            ),
        ],
    ];
    let goal = |v: f64, g: f64| {
        if v <= g {
            "met".to_string()
        } else {
            format!("NOT met, {:.1}x the goal", v / g)
        }
    };
    let (w, o, h) = (median(&wall), median(&own), median(&hwm));
    let verdict_sync = format!(
        "full sync {w:.2} s (goal <= {SYNC_GOAL_S:.0} s): {}; without the fake Marathon's time to produce the body (median {:.2} s) {o:.2} s: {}. Peak RSS {h:.0} MB (goal <= {RSS_GOAL_MB:.0} MB): {}",
        goal(w, SYNC_GOAL_S),
        server_ms / 1000.0,
        goal(o, SYNC_GOAL_S),
        goal(h, RSS_GOAL_MB),
    );
    let why_sync = format!(
        "Where the time goes (medians): the agent's read + parse {:.2} s (the server alone takes {:.2} s), plan + map writes {:.2} s, the rest {:.2} s (process start, the event stream's attach before the read, handing the catalog to the apply; the BPF load and attach run while the read is in flight){}",
        median(&read) / 1000.0,
        server_ms / 1000.0,
        median(&apply) / 1000.0,
        (w - median(&read) / 1000.0 - median(&apply) / 1000.0).max(0.0),
        if settle_failed > 0 {
            format!("; {settle_failed} re-reads failed before the resync re-read was applied")
        } else {
            String::new()
        }
    );

    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let e2m = sorted(ev.samples.iter().map(|s| s.e2m_ms).collect());
    let n = e2m.len();
    let mean = e2m.iter().sum::<f64>() / n.max(1) as f64;
    let reads: Vec<f64> = ev.samples.iter().map(|s| s.read_ms).collect();
    let applies: Vec<f64> = ev.samples.iter().map(|s| s.apply_ms).collect();
    let changed_ok = ev.samples.iter().filter(|s| s.changed == 1).count();
    let ev_header = ["event -> maps, ms", "p50", "p90", "p99", "max", "n"];
    let prow = |label: String, v: &[f64]| {
        vec![
            label,
            format!("{:.1}", percentile(v, 50.0)),
            format!("{:.1}", percentile(v, 90.0)),
            format!("{:.1}", percentile(v, 99.0)),
            format!("{:.1}", v.last().copied().unwrap_or(f64::NAN)),
            v.len().to_string(),
        ]
    };
    let mut ev_rows = vec![prow("all events".into(), &e2m)];
    let mut by_kind: BTreeMap<Kind, Vec<f64>> = BTreeMap::new();
    for s in &ev.samples {
        by_kind.entry(s.kind).or_default().push(s.e2m_ms);
    }
    for (k, v) in by_kind {
        ev_rows.push(prow(format!("  {}", k.label()), &sorted(v)));
    }
    let own_e2m = sorted(e2m.iter().map(|v| v - ev.server_ms).collect());
    ev_rows.push(prow(
        format!(
            "all events minus the fake Marathon's median {:.2} ms to answer one app (approximate)",
            ev.server_ms
        ),
        &own_e2m,
    ));
    let targeted = ev.samples.iter().filter(|s| s.targeted).count();
    let p99 = percentile(&e2m, 99.0);
    let p99_own = percentile(&own_e2m, 99.0);
    let breakdown = format!(
        "Per event (medians): a {:.0} ms window (a quarter of the {DEBOUNCE_MS} ms `--marathon-debounce-ms` default) gathers the change's burst of events, then `GET /v2/apps/{{id}}` of the app they name + its decode + the catalog rebuilt from every app's kept part {:.2} ms as the agent saw it (the fake Marathon alone answers one app in {:.2} ms), plan + map writes {:.2} ms; mean {mean:.1} ms. {targeted}/{n} changes were read as the one app they named (the full {:.1} MB list was not re-read); {changed_ok}/{n} applies changed exactly one service; {} extra event applies",
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
        goal(p99, P99_GOAL_MS),
        goal(p99_own, P99_GOAL_MS),
        2000.0 / p99.max(0.001)
    );

    let cmd = format!(
        "cargo xtask bench marathon --apps {} --tasks {} --event-apps {} --events {} --runs {}",
        a.apps, a.tasks, a.event_apps, a.events, a.runs
    );
    let setup = format!(
        "{} apps x {} tasks in the documented host-networking shape (`portDefinitions[0].labels.VIP_0 = \"/app-i:80\"`, MESOS_TCP health check, every task healthy; task hosts 127.1.0.1-250 with distinct ports, never connected to), served by `l4lb-fake-marathon --state` ({body_mb:.1} MB at `/v2/apps?embed=apps.tasks`) in the sandbox netns; a fresh agent per run with `--marathon URL --max-slots {slots} --marathon-timeout-ms {SYNC_TIMEOUT_MS} --marathon-resync-secs {RESYNC_SECS}` ({} slots per service: the default 1,048,576 holds ~{} such services), release builds",
        a.apps,
        a.tasks,
        table_size(a.tasks),
        1_048_576 / table_size(a.tasks)
    );
    let commit = util::stdout(Command::new("git").args(["rev-parse", "--short", "HEAD"]))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let reading = format!(
        "Reading the numbers (agent at commit {commit}): an event that names its app (task status and \
         health changes, app definition changes, and `deployment_success` through the apps its plan \
         lists) makes the agent re-read that app alone (`GET /v2/apps/{{id}}?embed=app.tasks`), keep the \
         decoded share of every other app from the last full read and rebuild the catalog from those \
         shares; an app that did not change sends no update at all. A full `/v2/apps` re-read is left \
         for the start, a stream reconnect, the 60 s resync, events that name no app (or more than 16 \
         in one window) and a failed app read. What still grows with the cluster per event is the \
         catalog rebuild (within the {:.2} ms read at {} apps) and the plan's diff ({:.2} ms of plan + \
         map writes). The full sync's RSS is mostly heap (anonymous {:.0} MB of {:.0} MB): the decoded \
         share of every app, the catalog built from them and the Maglev tables waiting to be written \
         are held at once, and the re-read after the stream attaches overlaps the first apply (the \
         min-max of the settled peak). After the events at {} apps the agent's peak was {:.0} MB",
        median(&reads),
        a.event_apps,
        median(&applies),
        median(&col(&|r| r.anon_settled_mb)),
        median(&col(&|r| r.rss_settled_mb)),
        a.event_apps,
        ev.hwm_mb,
    );
    let text = format!(
        "Full sync ({setup})\n{}{verdict_sync}\n{why_sync}\n\nEvent -> maps ({} apps x {} tasks loaded, {n} changes one by one)\n{}{breakdown}\n{hist}\nagent VmHWM after the events: {:.1} MB\n{verdict_ev}\n{reading}\n{machine}\n",
        report::table(&header, &rows),
        a.event_apps,
        a.tasks,
        report::table(&ev_header, &ev_rows),
        ev.hwm_mb
    );
    let markdown = format!(
        "## Marathon source: full sync and event -> maps\n\n\
         `{cmd}` on {{date}}.\n\n\
         **Full sync**, {} runs: {setup}. Wall time is agent spawn -> the first `table applied` log line \
         (its timestamp): process start, BPF load and attach, the HTTP read (including the server's time to \
         produce the body), the parse, VIP naming, planning and the map writes; the event stream \
         attaches before that read, so no second read follows it. Peak RSS is the agent's VmHWM once the \
         first resync (`--marathon-resync-secs {RESYNC_SECS}` here, 60 s by default) has re-read and \
         applied everything while the first copy was held: a second copy in flight is part of the \
         steady state.\n\n{}\n{verdict_sync}.\n\n{why_sync}.\n\n\
         **Event -> maps**, one run: {} apps x {} tasks loaded, {n} changes fired one at a time through the \
         fake Marathon's control API (cycling: a health flip to unhealthy, back to healthy, a scale-up by \
         one healthy task, the kill of that task), each waited for before the next; the latency is the \
         agent's `event_to_maps_us` (first event received on the SSE stream -> maps written).\n\n{}\n\
         {breakdown}; {hist}; the agent's VmHWM after the events: {:.0} MB.\n\n{verdict_ev}.\n\n{reading}.\n\n\
         Machine: {machine}.\n",
        runs.len(),
        report::md_table(&header, &rows),
        a.event_apps,
        a.tasks,
        report::md_table(&ev_header, &ev_rows),
        ev.hwm_mb,
    );
    (text, markdown)
}

// ------------------------------------------------------------------ dns

#[derive(Clone, Debug, Default)]
struct DnsRun {
    sent: u64,
    completed: u64,
    lost: u64,
    qps: f64,
    noerror: u64,
    avg_ms: f64,
    min_ms: f64,
    max_ms: f64,
    stddev_ms: f64,
    agent_cpu_s: f64,
    wall_s: f64,
    /// Machine-wide input-backlog drops during the run.
    backlog_drops: u64,
    /// UDP receive-buffer overflows in the sandbox netns during the run.
    rcvbuf_errors: u64,
    /// Of which at the agent's DNS socket.
    agent_socket_drops: u64,
}

impl DnsRun {
    fn qps_per_core(&self) -> f64 {
        self.completed as f64 / self.agent_cpu_s.max(1e-9)
    }
}

/// The numbers of a dnsperf 2.10 report.
fn parse_dnsperf(out: &str) -> Result<DnsRun> {
    let after = |key: &str| -> Option<&str> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
    };
    let first_u =
        |key: &str| -> Option<u64> { after(key)?.split_whitespace().next()?.parse().ok() };
    let first_f =
        |key: &str| -> Option<f64> { after(key)?.split_whitespace().next()?.parse().ok() };
    let mut r = DnsRun {
        sent: first_u("Queries sent:").context("no `Queries sent`")?,
        completed: first_u("Queries completed:").context("no `Queries completed`")?,
        lost: first_u("Queries lost:").context("no `Queries lost`")?,
        qps: first_f("Queries per second:").context("no `Queries per second`")?,
        ..DnsRun::default()
    };
    // "Response codes:      NOERROR 123 (100.00%)"
    if let Some(rc) = after("Response codes:") {
        let f: Vec<&str> = rc.split_whitespace().collect();
        if let Some(i) = f.iter().position(|w| *w == "NOERROR") {
            r.noerror = f.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    // "Average Latency (s):  0.000123 (min 0.000010, max 0.001234)"
    if let Some(l) = after("Average Latency (s):") {
        let nums: Vec<f64> = l
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|t| t.parse().ok())
            .collect();
        if nums.len() >= 3 {
            (r.avg_ms, r.min_ms, r.max_ms) = (nums[0] * 1e3, nums[1] * 1e3, nums[2] * 1e3);
        }
    }
    r.stddev_ms = first_f("Latency StdDev (s):").unwrap_or(f64::NAN) * 1e3;
    Ok(r)
}

fn dig_short(sb: &Sandbox, name: &str, rtype: &str) -> Result<String> {
    let (ip, port) = DNS_LISTEN.split_once(':').expect("ip:port");
    let out = util::output_timeout(
        sb.in_netns("dig")
            .args([
                &format!("@{ip}"),
                "-p",
                port,
                "+short",
                "+tries=1",
                "+time=1",
            ])
            .args([name, rtype]),
        Duration::from_secs(5),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// dnsperf's load: (clients, outstanding queries, qps limit).
type Load = (&'static str, &'static str, Option<&'static str>);
const SATURATE: Load = (DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, None);
/// A fixed offered rate well below saturation: latency without queueing.
/// (`-q 1` is no use: dnsperf then idles between queries, ~50 qps.)
const PACED_QPS: &str = "10000";
const PACED: Load = ("1", "100", Some(PACED_QPS));

/// Packets the kernel's per-CPU input backlogs dropped, machine-wide
/// (/proc/net/softnet_stat column 2): loopback traffic goes through them, so
/// other load on the box can drop our queries there.
fn backlog_drops() -> u64 {
    fs::read_to_string("/proc/net/softnet_stat")
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter_map(|h| u64::from_str_radix(h, 16).ok())
                .sum()
        })
        .unwrap_or(0)
}

/// UDP `RcvbufErrors` of the sandbox netns (/proc/net/snmp read from inside
/// it): datagrams dropped because a socket's receive buffer was full.
fn udp_rcvbuf_errors(sb: &Sandbox) -> Result<u64> {
    let out = util::output_timeout(
        sb.in_netns("cat").arg("/proc/net/snmp"),
        Duration::from_secs(5),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (
        udp.next().context("no Udp: in snmp")?,
        udp.next().context("no Udp: values")?,
    );
    let i = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .context("no RcvbufErrors")?;
    Ok(values
        .split_whitespace()
        .nth(i)
        .context("short Udp: line")?
        .parse()?)
}

/// `drops` of the agent's DNS socket (/proc/net/udp in the sandbox netns,
/// local port of [`DNS_LISTEN`]).
fn dns_socket_drops(sb: &Sandbox) -> Result<u64> {
    let port: u16 = DNS_LISTEN.rsplit_once(':').expect("ip:port").1.parse()?;
    let out = util::output_timeout(
        sb.in_netns("cat").arg("/proc/net/udp"),
        Duration::from_secs(5),
    )?;
    let suffix = format!(":{port:04X}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&suffix))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum())
}

/// The receive buffer (`rb` of `ss -m`) of the agent's DNS UDP socket.
fn dns_socket_rcvbuf(sb: &Sandbox) -> Option<u64> {
    let port = DNS_LISTEN.rsplit_once(':')?.1;
    let out = util::output_timeout(
        sb.in_netns("ss")
            .args(["-uanm", "sport", "=", &format!(":{port}")]),
        Duration::from_secs(5),
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let i = text.find(",rb")? + 3;
    text[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn dnsperf(
    sb: &Sandbox,
    file: &Path,
    seconds: u32,
    (clients, outstanding, limit): Load,
) -> Result<String> {
    let (ip, port) = DNS_LISTEN.split_once(':').expect("ip:port");
    // Count bound too: at most 2M queries a second over the run.
    let passes = (u64::from(seconds) * 2_000_000 / u64::from(DNS_APPS)).to_string();
    let secs = seconds.to_string();
    let mut cmd = sb.in_netns("dnsperf");
    cmd.args(["-s", ip, "-p", port, "-m", "udp"])
        .arg("-d")
        .arg(file)
        .args(["-l", &secs, "-n", &passes, "-t", "2"])
        .args(["-c", clients, "-T", DNSPERF_THREADS])
        .args(["-q", outstanding]);
    if let Some(q) = limit {
        cmd.args(["-Q", q]);
    }
    util::stdout_timeout(
        &mut cmd,
        "dnsperf",
        Duration::from_secs(u64::from(seconds) + 30),
    )
}

fn dns_run(sb: &Sandbox, pid: u32, file: &Path, seconds: u32, load: Load) -> Result<DnsRun> {
    let drops0 = backlog_drops();
    let rcvbuf0 = udp_rcvbuf_errors(sb)?;
    let sock0 = dns_socket_drops(sb)?;
    let cpu0 = cpu_seconds(pid)?;
    let t0 = Instant::now();
    let out = dnsperf(sb, file, seconds, load)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(pid)?;
    let drops = backlog_drops().saturating_sub(drops0);
    let rcvbuf = udp_rcvbuf_errors(sb)?.saturating_sub(rcvbuf0);
    let sock = dns_socket_drops(sb)?.saturating_sub(sock0);
    let mut r = parse_dnsperf(&out).with_context(|| format!("dnsperf printed:\n{out}"))?;
    r.agent_cpu_s = cpu1 - cpu0;
    r.wall_s = wall;
    r.backlog_drops = drops;
    r.rcvbuf_errors = rcvbuf;
    r.agent_socket_drops = sock;
    if r.completed == 0 || r.noerror != r.completed {
        bail!(
            "dnsperf: {} completed, {} NOERROR: every name must exist\n{out}",
            r.completed,
            r.noerror
        );
    }
    Ok(r)
}

pub fn dns(a: DnsArgs) -> Result<()> {
    if a.write && a.runs < 5 {
        bail!("--write records published numbers: use at least 5 runs");
    }
    if util::output(Command::new("dnsperf").arg("-h")).is_err() {
        bail!("dnsperf not installed: run `cargo xtask setup` (Debian package dnsperf)");
    }
    prepare()?;
    let deadline = Instant::now() + TOTAL_TIMEOUT;
    let mut sb = Sandbox::new("bdns")?;
    let m = FakeMarathon::start(&mut sb, 1, gen_apps(DNS_APPS, DNS_TASKS))?;
    let mut agent = start_agent(
        &mut sb,
        &m,
        max_slots(DNS_APPS, DNS_TASKS, false),
        &["--dns-listen", DNS_LISTEN],
    )?;
    let result = dns_with(&sb, &mut agent, &a, deadline);
    let stopped = agent.stop();
    let res = result?;
    stopped?;
    drop(m);
    drop(sb);
    let (text, md) = summarize_dns(&a, &res, &report::machine_line());
    print!("\n{text}");
    if a.write {
        report::write_section(DNS_SECTION, &md, &report::utc_date()?)?;
    }
    Ok(())
}

fn dns_with(sb: &Sandbox, agent: &mut Agent, a: &DnsArgs, deadline: Instant) -> Result<DnsResult> {
    let mut tail = LogTail::new(agent.log_path());
    let mut seen = vec![];
    let first = wait_line(&mut tail, agent, START_TIMEOUT, &mut seen, is_apply)?;
    if num(&first, "added") != Some(u64::from(DNS_APPS)) {
        bail!("first apply did not add {DNS_APPS} services: {first}");
    }
    // The records are there (and answered the way the queries expect).
    let t = Instant::now();
    loop {
        let a_ans = dig_short(sb, "app-0.marathon.mesos", "A")?;
        let srv_ans = dig_short(sb, "_app-0._tcp.marathon.mesos", "SRV")?;
        if a_ans.lines().count() == DNS_TASKS as usize
            && srv_ans.lines().count() == DNS_TASKS as usize
        {
            println!(
                "dig app-0.marathon.mesos A:\n{a_ans}\ndig _app-0._tcp.marathon.mesos SRV:\n{srv_ans}"
            );
            break;
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!("the agent's DNS does not answer as expected: A {a_ans:?}, SRV {srv_ans:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let dir = sb.workdir();
    let a_file = dir.join("queries-a.txt");
    let srv_file = dir.join("queries-srv.txt");
    let lines =
        |f: &dyn Fn(u32) -> String| (0..DNS_APPS).map(f).collect::<Vec<_>>().join("\n") + "\n";
    fs::write(&a_file, lines(&|i| format!("app-{i}.marathon.mesos A")))?;
    fs::write(
        &srv_file,
        lines(&|i| format!("_app-{i}._tcp.marathon.mesos SRV")),
    )?;

    // Warm-up, not counted.
    for f in [&a_file, &srv_file] {
        dns_run(sb, agent.pid(), f, 1, SATURATE).context("warm-up")?;
    }
    let (mut a_runs, mut srv_runs) = (vec![], vec![]);
    for r in 0..a.runs {
        for (label, f, out) in [
            ("A  ", &a_file, &mut a_runs),
            ("SRV", &srv_file, &mut srv_runs),
        ] {
            check_deadline(deadline)?;
            let run = dns_run(sb, agent.pid(), f, a.seconds, SATURATE)
                .with_context(|| format!("run {} {label}", r + 1))?;
            println!(
                "run {}/{} {label}: {:.0} qps, agent {:.2} CPU-s over {:.1} s -> {:.0} qps/core, lost {} (rcvbuf errors {}, at the agent's socket {}, backlog drops {}), avg {:.3} ms (max {:.2})",
                r + 1,
                a.runs,
                run.qps,
                run.agent_cpu_s,
                run.wall_s,
                run.qps_per_core(),
                run.lost,
                run.rcvbuf_errors,
                run.agent_socket_drops,
                run.backlog_drops,
                run.avg_ms,
                run.max_ms
            );
            out.push(run);
        }
    }
    // Latency without queueing: a paced rate.
    let lat_s = a.seconds.min(5);
    let mut lat = vec![];
    for (label, f) in [("A  ", &a_file), ("SRV", &srv_file)] {
        check_deadline(deadline)?;
        let run =
            dns_run(sb, agent.pid(), f, lat_s, PACED).with_context(|| format!("paced {label}"))?;
        println!(
            "paced {label}: {:.0} qps, avg {:.3} ms (min {:.3}, max {:.2}, stddev {:.3}), lost {}",
            run.qps, run.avg_ms, run.min_ms, run.max_ms, run.stddev_ms, run.lost
        );
        lat.push(run);
    }
    for l in tail.lines()? {
        check_line(&l)?;
    }
    Ok(DnsResult {
        a_runs,
        srv_runs,
        lat,
        lat_s,
        rcvbuf: dns_socket_rcvbuf(sb),
    })
}

struct DnsResult {
    a_runs: Vec<DnsRun>,
    srv_runs: Vec<DnsRun>,
    /// Paced runs: A, SRV.
    lat: Vec<DnsRun>,
    lat_s: u32,
    /// The agent's DNS socket's receive buffer, bytes.
    rcvbuf: Option<u64>,
}

fn summarize_dns(a: &DnsArgs, res: &DnsResult, machine: &str) -> (String, String) {
    let (a_runs, srv_runs) = (&res.a_runs[..], &res.srv_runs[..]);
    let header = [
        "query type",
        "qps",
        "agent CPU (cores)",
        "qps/core",
        "lost",
        "avg latency ms",
        "max latency ms",
    ];
    let row = |label: &str, runs: &[DnsRun]| {
        let v = |f: fn(&DnsRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let sent: u64 = runs.iter().map(|r| r.sent).sum();
        let lost: u64 = runs.iter().map(|r| r.lost).sum();
        vec![
            label.to_string(),
            mmm(&v(|r| r.qps), 0),
            mmm(&v(|r| r.agent_cpu_s / r.wall_s), 2),
            mmm(&v(DnsRun::qps_per_core), 0),
            format!("{lost} of {sent}"),
            mmm(&v(|r| r.avg_ms), 3),
            format!("{:.2}", median(&v(|r| r.max_ms))),
        ]
    };
    let rows = vec![
        row("A `app-i.marathon.mesos`", a_runs),
        row("SRV `_app-i._tcp.marathon.mesos`", srv_runs),
    ];
    let qpc = |runs: &[DnsRun]| median(&runs.iter().map(DnsRun::qps_per_core).collect::<Vec<_>>());
    let verdict_one = |label: &str, v: f64| {
        format!(
            "{label} {v:.0} qps/core (goal >= {QPS_CORE_GOAL:.0}): {}",
            if v >= QPS_CORE_GOAL {
                format!("met ({:.1}x Mesos-DNS's documented ~8,500)", v / 8500.0)
            } else {
                format!("NOT met ({:.0}% of the goal)", v / QPS_CORE_GOAL * 100.0)
            }
        )
    };
    let verdict = format!(
        "{}; {}",
        verdict_one("A", qpc(a_runs)),
        verdict_one("SRV", qpc(srv_runs))
    );
    let all = a_runs.iter().chain(srv_runs).chain(&res.lat);
    let (lost, drops, rcvbuf, sock) = all.fold((0, 0, 0, 0), |(l, d, b, s), r| {
        (
            l + r.lost,
            d + r.backlog_drops,
            b + r.rcvbuf_errors,
            s + r.agent_socket_drops,
        )
    });
    let loss_note = format!(
        "Lost queries over all runs: {lost} (dnsperf: no answer within 2 s); meanwhile UDP sockets in the sandbox netns overflowed their receive buffers {rcvbuf} times (`RcvbufErrors`), {sock} of them at the agent's DNS socket (its `drops` in /proc/net/udp; its receive buffer is {} bytes, `ss -m`), and the kernel's per-CPU input backlogs dropped {drops} packets machine-wide (/proc/net/softnet_stat, which other load on the box shares)",
        res.rcvbuf
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    );
    let lat_header = [
        "paced load",
        "qps",
        "lost",
        "avg latency ms",
        "min ms",
        "max ms",
        "stddev ms",
    ];
    let lat_rows: Vec<Vec<String>> = ["A", "SRV"]
        .iter()
        .zip(&res.lat)
        .map(|(t, r)| {
            vec![
                t.to_string(),
                format!("{:.0}", r.qps),
                format!("{} of {}", r.lost, r.sent),
                format!("{:.3}", r.avg_ms),
                format!("{:.3}", r.min_ms),
                format!("{:.2}", r.max_ms),
                format!("{:.3}", r.stddev_ms),
            ]
        })
        .collect();
    let lat_note = format!(
        "Latency under that load is mostly queueing behind {DNSPERF_OUTSTANDING} outstanding queries; at a paced {PACED_QPS} qps (`-c 1 -q 100 -Q {PACED_QPS}`, {} s per type, after the runs):",
        res.lat_s
    );
    let cmd = format!(
        "cargo xtask bench dns --seconds {} --runs {}",
        a.seconds, a.runs
    );
    let setup = format!(
        "the agent (release, tokio runtime with 2 worker threads) on a fake Marathon with {DNS_APPS} apps x {DNS_TASKS} healthy tasks, `--dns-listen {DNS_LISTEN}` in the sandbox netns; dnsperf 2.10 (Debian) in the same netns, UDP, `-c {DNSPERF_CLIENTS} -T {DNSPERF_THREADS} -q {DNSPERF_OUTSTANDING}`, {} s per run, query files of the {DNS_APPS} A names (3 A records each) and the {DNS_APPS} SRV names (3 SRV + 3 A in ADDITIONAL each); A and SRV runs alternate, {} runs each after a 1 s warm-up",
        a.seconds, a.runs
    );
    let note = "qps/core = queries answered / CPU seconds the agent process used during the run (utime + stime of all its threads, /proc/PID/stat). dnsperf shares the machine's cores with the agent, so the qps column is what this 2-core box delivers with the load generator on it, not the server's ceiling. dnsperf 2.10 reports mean, min, max and stddev of latency, not percentiles";
    let text = format!(
        "DNS ({setup})\n{}{verdict}\n{loss_note}\n{lat_note}\n{}{note}\n{machine}\n",
        report::table(&header, &rows),
        report::table(&lat_header, &lat_rows)
    );
    let markdown = format!(
        "## Embedded DNS: dnsperf, A and SRV\n\n`{cmd}` on {{date}}: {setup}. \
         Medians (min-max) over runs.\n\n{}\n{verdict}.\n\n{loss_note}.\n\n{lat_note}\n\n{}\n{note}.\n\nMachine: {machine}.\n",
        report::md_table(&header, &rows),
        report::md_table(&lat_header, &lat_rows)
    );
    (text, markdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_and_time() {
        let l = "\u{1b}[2m2026-11-26T10:00:01.500000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m l4lb_agent::run: table applied \u{1b}[3mtrigger\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"marathon initial\" \u{1b}[3madded\u{1b}[0m\u{1b}[2m=\u{1b}[0m10000 took_us=12345 event_to_maps_us=None";
        let s = strip_ansi(l);
        assert!(is_apply(&s));
        assert_eq!(field(&s, "trigger"), Some("marathon initial"));
        assert_eq!(num(&s, "added"), Some(10000));
        assert_eq!(num(&s, "took_us"), Some(12345));
        assert_eq!(num(&s, "event_to_maps_us"), None);
        let t = log_time(&s).unwrap();
        // 2026-11-26 = 20783 days after 1970-01-01.
        assert!((t - (20783.0 * 86400.0 + 36001.5)).abs() < 1e-6, "{t}");
    }

    #[test]
    fn sizes_and_stats() {
        assert_eq!(table_size(5), 503);
        assert_eq!(table_size(6), 1009);
        assert!(max_slots(10_000, 5, false) >= 5_030_000);
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&s, 50.0), 2.0);
        assert_eq!(percentile(&s, 99.0), 4.0);
        assert_eq!(median(&s), 2.5);
        assert_ne!((host_of(0), port_of(0)), (host_of(250), port_of(250)));
    }

    #[test]
    fn dnsperf_report() {
        let out = "Statistics:\n\n  Queries sent:         1000\n  Queries completed:    998 (99.80%)\n  Queries lost:         2 (0.20%)\n\n  Response codes:       NOERROR 998 (100.00%)\n  Average packet size:  request 40, response 120\n  Run time (s):         1.000\n  Queries per second:   998.000000\n\n  Average Latency (s):  0.000123 (min 0.000010, max 0.001234)\n  Latency StdDev (s):   0.000050\n";
        let r = parse_dnsperf(out).unwrap();
        assert_eq!(
            (r.sent, r.completed, r.lost, r.noerror),
            (1000, 998, 2, 998)
        );
        assert!((r.qps - 998.0).abs() < 1e-9);
        assert!((r.avg_ms - 0.123).abs() < 1e-9 && (r.max_ms - 1.234).abs() < 1e-9);
        assert!((r.stddev_ms - 0.05).abs() < 1e-9);
    }
}
