//! `cargo xtask bench dns`: the embedded DNS server. The agent on a fake
//! Marathon (100 apps x 3 tasks) with `--dns-listen 127.0.0.1:5353`; dnsperf
//! in the sandbox netns with A (`app-i.marathon.mesos`) and SRV
//! (`_app-i._tcp.marathon.mesos`) query files; qps, loss, latency, and qps per CPU-second the agent consumed
//! (utime + stime from /proc/PID/stat over the run). Goal >= 50,000 qps/core.
//!
//! Safety: everything runs in a `Sandbox` (private netns with only `lo`,
//! child cgroup given to the agent). Task addresses are 127.1.0.x and nothing
//! ever connects to them; HTTP (fake Marathon, metrics) and DNS stay on the
//! netns' loopback. Every wait has a timeout, every dnsperf run is bounded by
//! `-l` (time) and `-n` (passes over the query file) and a kill timeout.
use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Agent, FakeMarathon, Sandbox};

use super::{
    agent_log::{LogTail, check_line, is_apply, num, wait_line},
    control::{
        MAX_RUNS, START_TIMEOUT, TOTAL_TIMEOUT, check_deadline, gen_apps, max_slots, prepare,
        start_agent,
    },
    knot::{self, KNOT_LISTEN, Knot},
    procfs::{backlog_drops, cpu_seconds, udp_rcvbuf_errors, udp_socket_drops},
    stats::{med_range_if_many, median, met},
};
use crate::{report, util};

const DNS_SECTION: &str = "xtask bench dns";
pub const MAX_SECONDS: i64 = 60;
const QPS_CORE_GOAL: f64 = 50_000.0;
const DNS_LISTEN: &str = "127.0.0.1:5353";
const DNS_APPS: u32 = 100;
const DNS_TASKS: u32 = 3;
/// dnsperf: simulated clients (sockets), threads, outstanding queries.
const DNSPERF_CLIENTS: &str = "8";
const DNSPERF_THREADS: &str = "1";
const DNSPERF_OUTSTANDING: &str = "200";

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

/// dnsperf's load: (clients, outstanding queries, qps limit).
type Load = (&'static str, &'static str, Option<&'static str>);
const SATURATE: Load = (DNSPERF_CLIENTS, DNSPERF_OUTSTANDING, None);
/// A fixed offered rate well below saturation: latency without queueing.
/// (`-q 1` is no use: dnsperf then idles between queries, ~50 qps.)
const PACED_QPS: &str = "10000";
const PACED: Load = ("1", "100", Some(PACED_QPS));

/// The port of an `ip:port`.
fn port_of(listen: &str) -> u16 {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("ip:port")
}

/// A DNS server under test: where it listens, its process.
struct Server<'a> {
    listen: &'a str,
    pid: u32,
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
    listen: &str,
    file: &Path,
    seconds: u32,
    (clients, outstanding, limit): Load,
) -> Result<String> {
    let (ip, port) = listen.split_once(':').expect("ip:port");
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

fn dns_run(sb: &Sandbox, server: &Server, file: &Path, seconds: u32, load: Load) -> Result<DnsRun> {
    let port = port_of(server.listen);
    let drops0 = backlog_drops();
    let rcvbuf0 = udp_rcvbuf_errors(sb)?;
    let sock0 = udp_socket_drops(sb, port)?;
    let cpu0 = cpu_seconds(server.pid)?;
    let t0 = Instant::now();
    let out = dnsperf(sb, server.listen, file, seconds, load)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds(server.pid)?;
    let drops = backlog_drops().saturating_sub(drops0);
    let rcvbuf = udp_rcvbuf_errors(sb)?.saturating_sub(rcvbuf0);
    let sock = udp_socket_drops(sb, port)?.saturating_sub(sock0);
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
        // The transfer writes Knot's zone file: the same records.
        &[
            "--dns-listen",
            DNS_LISTEN,
            "--dns-axfr-allow",
            "127.0.0.1/32",
        ],
    )?;
    let result = with_knot(&mut sb, &mut agent, &a, deadline);
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

/// Waits for the agent's records, starts Knot on a copy of them, then runs
/// the load on both.
fn with_knot(
    sb: &mut Sandbox,
    agent: &mut Agent,
    a: &DnsArgs,
    deadline: Instant,
) -> Result<DnsResult> {
    let mut tail = LogTail::new(agent.log_path());
    wait_ready(sb, agent, &mut tail)?;
    let zone = knot::zone_file(sb, DNS_LISTEN, "mesos")?;
    println!("Knot's zone file: {} records", zone.lines().count());
    let knot = Knot::start(sb, "mesos", &zone, "app-0.marathon.mesos")?;
    for (name, rtype) in PROBES {
        let ours = sorted_lines(&knot::dig(sb, DNS_LISTEN, name, rtype)?);
        let theirs = sorted_lines(&knot::dig(sb, KNOT_LISTEN, name, rtype)?);
        if ours != theirs {
            bail!("Knot answers {name} {rtype} otherwise: {theirs:?}, the agent {ours:?}");
        }
    }
    let servers = [
        Server {
            listen: DNS_LISTEN,
            pid: agent.pid(),
        },
        Server {
            listen: KNOT_LISTEN,
            pid: knot.pid(),
        },
    ];
    let res = dns_with(sb, &servers, a, deadline)?;
    for l in tail.lines()? {
        check_line(&l)?;
    }
    Ok(res)
}

/// The names every query file asks for, checked on both servers first.
const PROBES: [(&str, &str); 2] = [
    ("app-0.marathon.mesos", "A"),
    ("_app-0._tcp.marathon.mesos", "SRV"),
];

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Until the first apply and the agent's DNS answering with every task.
fn wait_ready(sb: &Sandbox, agent: &mut Agent, tail: &mut LogTail) -> Result<()> {
    let first = wait_line(tail, agent, START_TIMEOUT, &mut vec![], is_apply)?;
    if num(&first, "added") != Some(u64::from(DNS_APPS)) {
        bail!("first apply did not add {DNS_APPS} services: {first}");
    }
    let t = Instant::now();
    loop {
        let [a_ans, srv_ans] = PROBES.map(|(n, t)| knot::dig(sb, DNS_LISTEN, n, t));
        let (a_ans, srv_ans) = (a_ans?, srv_ans?);
        if a_ans.lines().count() == DNS_TASKS as usize
            && srv_ans.lines().count() == DNS_TASKS as usize
        {
            println!(
                "dig {} A:\n{a_ans}\ndig {} SRV:\n{srv_ans}",
                PROBES[0].0, PROBES[1].0
            );
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!("the agent's DNS does not answer as expected: A {a_ans:?}, SRV {srv_ans:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Saturating runs (A and SRV alternate; within each, which server goes
/// first alternates by run), then paced runs, on both servers.
fn dns_with(
    sb: &Sandbox,
    servers: &[Server; 2],
    a: &DnsArgs,
    deadline: Instant,
) -> Result<DnsResult> {
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
    for (s, f) in servers.iter().flat_map(|s| [(s, &a_file), (s, &srv_file)]) {
        dns_run(sb, s, f, 1, SATURATE).context("warm-up")?;
    }
    let mut sides = [Side::default(), Side::default()];
    for r in 0..a.runs as usize {
        for (label, f, is_a) in [("A  ", &a_file, true), ("SRV", &srv_file, false)] {
            for k in [r % 2, 1 - r % 2] {
                check_deadline(deadline)?;
                let run = dns_run(sb, &servers[k], f, a.seconds, SATURATE)
                    .with_context(|| format!("run {} {label} {}", r + 1, SIDES[k]))?;
                print_run(
                    &format!("run {}/{} {label} {}", r + 1, a.runs, SIDES[k]),
                    &run,
                );
                let side = &mut sides[k];
                match is_a {
                    true => side.a.push(run),
                    false => side.srv.push(run),
                }
            }
        }
    }
    // Latency without queueing: a paced rate.
    let lat_s = a.seconds.min(5);
    for (label, f) in [("A  ", &a_file), ("SRV", &srv_file)] {
        for (k, server) in servers.iter().enumerate() {
            check_deadline(deadline)?;
            let run = dns_run(sb, server, f, lat_s, PACED)
                .with_context(|| format!("paced {label} {}", SIDES[k]))?;
            println!(
                "paced {label} {}: {:.0} qps, avg {:.3} ms (min {:.3}, max {:.2}, stddev {:.3}), lost {}",
                SIDES[k], run.qps, run.avg_ms, run.min_ms, run.max_ms, run.stddev_ms, run.lost
            );
            sides[k].lat.push(run);
        }
    }
    Ok(DnsResult {
        sides,
        lat_s,
        rcvbuf: dns_socket_rcvbuf(sb),
    })
}

fn print_run(label: &str, run: &DnsRun) {
    println!(
        "{label}: {:.0} qps, {:.2} CPU-s over {:.1} s -> {:.0} qps/core, lost {} (rcvbuf errors {}, at the server's socket {}, backlog drops {}), avg {:.3} ms (max {:.2})",
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
}

/// The servers compared, in [`DnsResult::sides`] order.
const SIDES: [&str; 2] = ["l4lb", "Knot"];

/// One server's runs.
#[derive(Default)]
struct Side {
    a: Vec<DnsRun>,
    srv: Vec<DnsRun>,
    /// Paced runs: A, SRV.
    lat: Vec<DnsRun>,
}

struct DnsResult {
    /// l4lb, Knot.
    sides: [Side; 2],
    lat_s: u32,
    /// The agent's DNS socket's receive buffer, bytes.
    rcvbuf: Option<u64>,
}

const DNS_HEADER: [&str; 8] = [
    "server",
    "query type",
    "qps",
    "CPU (cores)",
    "qps/core",
    "lost",
    "avg latency ms",
    "max latency ms",
];

const PACED_HEADER: [&str; 8] = [
    "paced load",
    "server",
    "qps",
    "lost",
    "avg latency ms",
    "min ms",
    "max ms",
    "stddev ms",
];

fn summarize_dns(a: &DnsArgs, res: &DnsResult, machine: &str) -> (String, String) {
    let [ours, knot] = &res.sides;
    let rows = saturation_rows(ours, knot);
    let verdict = format!("{}.\n\n{}", own_goal(ours), knot_verdict(ours, knot));
    let loss_note = loss_note(res);
    let lat_rows = paced_rows(ours, knot);
    let lat_note = format!(
        "Latency under that load is mostly queueing behind {DNSPERF_OUTSTANDING} outstanding queries; at a paced {PACED_QPS} qps (`-c 1 -q 100 -Q {PACED_QPS}`, {} s per type and server, after the runs):",
        res.lat_s
    );
    let lat_verdict = paced_verdict(ours, knot);
    let cmd = format!(
        "cargo xtask bench dns --seconds {} --runs {}",
        a.seconds, a.runs
    );
    let setup = format!(
        "the agent (release, tokio runtime with 2 worker threads) on a fake Marathon with {DNS_APPS} apps x {DNS_TASKS} healthy tasks, `--dns-listen {DNS_LISTEN}` in the sandbox netns, and Knot DNS 3.2 (Debian's knotd, its default one UDP worker per CPU) on {KNOT_LISTEN} in the same netns serving the same `mesos` zone, written from the agent's own zone transfer (checked: both answer the probe names alike); dnsperf 2.10 (Debian) in that netns, UDP, `-c {DNSPERF_CLIENTS} -T {DNSPERF_THREADS} -q {DNSPERF_OUTSTANDING}`, {} s per run, query files of the {DNS_APPS} A names (3 A records each) and the {DNS_APPS} SRV names (3 SRV + 3 A in ADDITIONAL each); A and SRV runs alternate and, within each, which server goes first alternates by run; {} runs each after a 1 s warm-up",
        a.seconds, a.runs
    );
    let note = "qps/core = queries answered / CPU seconds the server process used during the run (utime + stime of all its threads, /proc/PID/stat). dnsperf shares the machine's cores with the server, so the qps column is what this 2-core box delivers with the load generator on it, not the server's ceiling. dnsperf 2.10 reports mean, min, max and stddev of latency, not percentiles. The query files repeat 100 names, so after the warm-up l4lb answers from its per-socket reply cache (the id and the question's case patched into a remembered reply), as it would a real client population asking for the same services; Knot has no such cache and answers from its compiled zone";
    let text = format!(
        "DNS ({setup})\n{}{verdict}\n{loss_note}\n{lat_note}\n{}{lat_verdict}\n{note}\n{machine}\n",
        report::table(&DNS_HEADER, &rows),
        report::table(&PACED_HEADER, &lat_rows)
    );
    let markdown = format!(
        "## Embedded DNS: dnsperf, A and SRV, next to Knot DNS\n\n`{cmd}` on {{date}}: {setup}. \
         Medians (min-max) over runs.\n\n{}\n{verdict}.\n\n{loss_note}.\n\n{lat_note}\n\n{}\n{lat_verdict}.\n\n{note}.\n\nMachine: {machine}.\n",
        report::md_table(&DNS_HEADER, &rows),
        report::md_table(&PACED_HEADER, &lat_rows)
    );
    (text, markdown)
}

/// One row per (server, query type) of the runs at saturation.
fn saturation_rows(ours: &Side, knot: &Side) -> Vec<Vec<String>> {
    let row = |server: &str, label: &str, runs: &[DnsRun]| {
        let v = |f: fn(&DnsRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let sent: u64 = runs.iter().map(|r| r.sent).sum();
        let lost: u64 = runs.iter().map(|r| r.lost).sum();
        vec![
            server.to_string(),
            label.to_string(),
            med_range_if_many(&v(|r| r.qps), 0),
            med_range_if_many(&v(|r| r.agent_cpu_s / r.wall_s), 2),
            med_range_if_many(&v(DnsRun::qps_per_core), 0),
            format!("{lost} of {sent}"),
            med_range_if_many(&v(|r| r.avg_ms), 3),
            format!("{:.2}", median(&v(|r| r.max_ms))),
        ]
    };
    let (a_label, srv_label) = (
        "A `app-i.marathon.mesos`",
        "SRV `_app-i._tcp.marathon.mesos`",
    );
    vec![
        row("l4lb", a_label, &ours.a),
        row("Knot", a_label, &knot.a),
        row("l4lb", srv_label, &ours.srv),
        row("Knot", srv_label, &knot.srv),
    ]
}

/// What was lost over all runs, and where the kernel dropped packets.
fn loss_note(res: &DnsResult) -> String {
    let all = res
        .sides
        .iter()
        .flat_map(|s| s.a.iter().chain(&s.srv).chain(&s.lat));
    let (lost, drops, rcvbuf, sock) = all.fold((0, 0, 0, 0), |(l, d, b, s), r| {
        (
            l + r.lost,
            d + r.backlog_drops,
            b + r.rcvbuf_errors,
            s + r.agent_socket_drops,
        )
    });
    format!(
        "Lost queries over all runs: {lost} (dnsperf: no answer within 2 s); meanwhile UDP sockets in the sandbox netns overflowed their receive buffers {rcvbuf} times (`RcvbufErrors`), {sock} of them at the servers' sockets (their `drops` in /proc/net/udp; the agent's receive buffer is {} bytes, `ss -m`), and the kernel's per-CPU input backlogs dropped {drops} packets machine-wide (/proc/net/softnet_stat, which other load on the box shares)",
        res.rcvbuf
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    )
}

/// The paced runs: one row per query type and server.
fn paced_rows(ours: &Side, knot: &Side) -> Vec<Vec<String>> {
    (0..2)
        .flat_map(|t| [(t, "l4lb", &ours.lat), (t, "Knot", &knot.lat)])
        .filter_map(|(t, server, lat)| Some((["A", "SRV"][t], server, lat.get(t)?)))
        .map(|(t, server, r)| {
            vec![
                t.to_string(),
                server.to_string(),
                format!("{:.0}", r.qps),
                format!("{} of {}", r.lost, r.sent),
                format!("{:.3}", r.avg_ms),
                format!("{:.3}", r.min_ms),
                format!("{:.2}", r.max_ms),
                format!("{:.3}", r.stddev_ms),
            ]
        })
        .collect()
}

fn qpc(runs: &[DnsRun]) -> f64 {
    median(&runs.iter().map(DnsRun::qps_per_core).collect::<Vec<_>>())
}

/// The project's own floor, per query type.
fn own_goal(ours: &Side) -> String {
    let one = |label: &str, v: f64| {
        format!(
            "{label} {v:.0} qps/core (goal >= {QPS_CORE_GOAL:.0}): {}",
            if v >= QPS_CORE_GOAL {
                format!("met ({:.1}x Mesos-DNS's documented ~8,500)", v / 8500.0)
            } else {
                format!("NOT met ({:.0}% of the goal)", v / QPS_CORE_GOAL * 100.0)
            }
        )
    };
    format!("{}; {}", one("A", qpc(&ours.a)), one("SRV", qpc(&ours.srv)))
}

/// Queries per CPU-second against Knot's, per query type (goal >= 1.0x).
fn knot_verdict(ours: &Side, knot: &Side) -> String {
    let one = |label: &str, o: &[DnsRun], k: &[DnsRun]| {
        let r = qpc(o) / qpc(k).max(1e-9);
        let verdict = met(r >= 1.0);
        format!(
            "{label} {r:.2}x ({:.0} vs {:.0}): {verdict}",
            qpc(o),
            qpc(k)
        )
    };
    format!(
        "l4lb / Knot queries per CPU-second (goal >= 1.0x): {}; {}",
        one("A", &ours.a, &knot.a),
        one("SRV", &ours.srv, &knot.srv)
    )
}

/// Mean latency at the paced load against Knot's (goal: not above it).
fn paced_verdict(ours: &Side, knot: &Side) -> String {
    let parts: Vec<String> = ["A", "SRV"]
        .iter()
        .zip(ours.lat.iter().zip(&knot.lat))
        .map(|(t, (o, k))| {
            let verdict = met(o.avg_ms <= k.avg_ms);
            format!("{t} {:.3} vs {:.3} ms: {verdict}", o.avg_ms, k.avg_ms)
        })
        .collect();
    format!(
        "Paced mean latency, l4lb vs Knot (goal: l4lb <= Knot): {}",
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn runs(qps: &[f64], cpu_s: f64, avg_ms: f64) -> Vec<DnsRun> {
        qps.iter()
            .map(|&qps| DnsRun {
                sent: 1000,
                completed: (qps * 2.0) as u64,
                lost: 1,
                qps,
                noerror: (qps * 2.0) as u64,
                avg_ms,
                min_ms: avg_ms / 4.0,
                max_ms: avg_ms * 10.0,
                stddev_ms: avg_ms / 2.0,
                agent_cpu_s: cpu_s,
                wall_s: 2.0,
                backlog_drops: 2,
                rcvbuf_errors: 3,
                agent_socket_drops: 1,
            })
            .collect()
    }

    /// The whole report for fixed runs: any change to its text is deliberate
    /// (on a mismatch the new text is in /tmp/l4lb-dns-summary.txt).
    #[test]
    fn summary_text_is_stable() {
        let ours = Side {
            a: runs(&[40_000.0, 42_000.0], 1.0, 1.5),
            srv: runs(&[30_000.0], 1.2, 2.0),
            lat: runs(&[100.0, 100.0], 0.01, 0.1),
        };
        let knot = Side {
            a: runs(&[35_000.0, 36_000.0], 1.1, 1.2),
            srv: runs(&[33_000.0], 1.0, 1.9),
            lat: runs(&[100.0, 100.0], 0.01, 0.12),
        };
        let res = DnsResult {
            sides: [ours, knot],
            lat_s: 5,
            rcvbuf: Some(212_992),
        };
        let a = DnsArgs {
            seconds: 2,
            runs: 2,
            write: false,
        };
        let (text, md) = summarize_dns(&a, &res, "MACHINE");
        let got = format!("{text}\n----\n{md}");
        let want = include_str!("testdata/dns_summary.txt");
        if got != want {
            let _ = std::fs::write("/tmp/l4lb-dns-summary.txt", &got);
        }
        assert_eq!(got, want);
    }
}
