//! `cargo xtask bench redis`: persistent-connection throughput,
//! `redis-benchmark -t get,set -n N -c C` against one `redis-server` in the
//! sandbox, direct vs through an l4lb VIP, runs alternating (ABBA) so drift
//! hits both alike.
//!
//! Every load is bounded by count and by a kill timeout; redis-server is a
//! child of the sandbox and ends with it.
use std::{
    fmt::Write as _,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Agent, Sandbox};

use super::{
    common::{MAX_ROUNDS, bpf_connects, in_one_sandbox},
    procfs::{cgroup_cpu_s, cpu_seconds},
    stats::{Ratios, med_range, met},
};
use crate::{report, util};

const SECTION_REDIS: &str = "xtask bench redis";
const THROUGHPUT_GOAL: f64 = 0.99;

#[derive(clap::Args, Clone, Debug)]
pub struct RedisArgs {
    /// Requests per test and run (`redis-benchmark -n`). Short runs, many
    /// pairs: a pair then shares the machine's load more often.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1000..=5_000_000))]
    pub requests: u32,
    /// Parallel connections (`redis-benchmark -c`).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
    /// Runs per path (direct and VIP alternate ABBA).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=MAX_ROUNDS as i64))]
    pub rounds: u32,
    /// Also replace this benchmark's section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

// bench redis

const REDIS_BACKEND_IP: &str = "127.0.0.2";
const REDIS_PORT: &str = "6379";
const REDIS_VIP_IP: &str = "11.0.0.10";
const REDIS_TESTS: [&str; 2] = ["SET", "GET"];

/// One redis-benchmark run: per test (test, rps, p50 ms), and the requests
/// per CPU-second the client (the sandbox cgroup's `cpu.stat`) and the
/// server (`/proc/PID/stat`) spent on the whole run.
#[derive(Clone, Debug, Default)]
struct RedisRun {
    tests: Vec<(String, f64, f64)>,
    per_cpu_s: f64,
}

pub fn redis(a: RedisArgs) -> Result<()> {
    in_one_sandbox(
        "redis",
        SECTION_REDIS,
        a.rounds,
        a.write,
        |sb, deadline| redis_in(sb, &a, deadline),
        |(direct, vip, check), load_before, machine| {
            redis_summary(direct, vip, check, &a, load_before, machine)
        },
    )
}

fn redis_in(
    sb: &mut Sandbox,
    a: &RedisArgs,
    deadline: Instant,
) -> Result<(Vec<RedisRun>, Vec<RedisRun>, String)> {
    let mut srv = sb.in_netns("redis-server");
    srv.args([
        "--bind",
        REDIS_BACKEND_IP,
        "--port",
        REDIS_PORT,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        "",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::fs::File::create(sb.workdir().join("redis.log"))?);
    let pid = sb.spawn(srv)?;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let out = util::output_timeout(
            sb.in_netns("redis-cli")
                .args(["-h", REDIS_BACKEND_IP, "-p", REDIS_PORT, "ping"]),
            Duration::from_secs(5),
        )?;
        if String::from_utf8_lossy(&out.stdout).contains("PONG") {
            break;
        }
        if Instant::now() >= until {
            bail!("redis-server did not answer PING");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let yaml = format!(
        "vips:\n  - vip: {REDIS_VIP_IP}:{REDIS_PORT}\n    protocol: tcp\n    backends: [\"{REDIS_BACKEND_IP}:{REDIS_PORT}\"]\n"
    );
    let mut agent = Agent::start(sb, &yaml)?;
    let result = (|| {
        agent.wait_vips(1, Duration::from_secs(30))?;
        // Warm-up (not counted).
        for h in [REDIS_BACKEND_IP, REDIS_VIP_IP] {
            redis_bench(sb, pid, h, a.requests.min(20_000), a.clients, deadline)?;
        }
        let (mut direct, mut vip) = (Vec::new(), Vec::new());
        for r in 0..a.rounds {
            // ABBA: direct first in even rounds, VIP first in odd ones.
            let order = if r % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for through_vip in order {
                let host = if through_vip {
                    REDIS_VIP_IP
                } else {
                    REDIS_BACKEND_IP
                };
                let run = redis_bench(sb, pid, host, a.requests, a.clients, deadline)
                    .with_context(|| format!("round {} to {host}", r + 1))?;
                println!(
                    "round {}/{} {:<6} {}",
                    r + 1,
                    a.rounds,
                    if through_vip { "VIP" } else { "direct" },
                    run.tests
                        .iter()
                        .map(|(t, rps, p50)| format!("{t} {rps:.0} rps p50 {p50:.3} ms"))
                        .collect::<Vec<_>>()
                        .join("  ")
                        + &format!("  {:.0} requests per CPU-second", run.per_cpu_s)
                );
                if through_vip {
                    vip.push(run)
                } else {
                    direct.push(run)
                }
            }
        }
        Ok::<_, anyhow::Error>((direct, vip))
    })();
    let connects = bpf_connects(sb);
    let stopped = agent.stop();
    let _ = sb.kill(pid);
    let (direct, vip) = result?;
    stopped?;
    // redis-benchmark opens -c connections per test (+1 for its CONFIG GET).
    let check = match connects {
        Ok(c) => format!(
            "BPF connect4 counted {c} connects to the VIP ({} runs (warm-up included) x 2 tests x {} clients, plus each run's setup connections)",
            a.rounds + 1,
            a.clients
        ),
        Err(e) => format!("BPF counters unreadable: {e:#}"),
    };
    Ok((direct, vip, check))
}

/// `redis-benchmark -h HOST -t set,get -n N -c C --csv` in the sandbox cgroup.
fn redis_bench(
    sb: &Sandbox,
    server: u32,
    host: &str,
    n: u32,
    c: u32,
    deadline: Instant,
) -> Result<RedisRun> {
    let left = util::time_left(deadline)?;
    let mut cmd = sb.in_cgroup("redis-benchmark");
    cmd.args([
        "-h",
        host,
        "-p",
        REDIS_PORT,
        "-t",
        "set,get",
        "-n",
        &n.to_string(),
        "-c",
        &c.to_string(),
        "--csv",
    ]);
    let cpu0 = cgroup_cpu_s(sb.cgroup()).ok().zip(cpu_seconds(server).ok());
    let out = util::output_timeout(&mut cmd, Duration::from_secs(300).min(left))?;
    let cpu1 = cgroup_cpu_s(sb.cgroup()).ok().zip(cpu_seconds(server).ok());
    let stdout = util::success_stdout(&out, &format!("redis-benchmark -h {host}"))?;
    let tests = parse_redis_csv(&stdout);
    if tests.len() != REDIS_TESTS.len() {
        bail!("redis-benchmark printed {stdout:?}");
    }
    let per_cpu_s = match (cpu0, cpu1) {
        (Some((c0, s0)), Some((c1, s1))) if c1 + s1 > c0 + s0 => {
            f64::from(n) * tests.len() as f64 / ((c1 - c0) + (s1 - s0))
        }
        _ => f64::NAN,
    };
    Ok(RedisRun { tests, per_cpu_s })
}

/// `"SET","98039.22","0.275","0.080","0.263",…` → (SET, 98039.22, p50 0.263).
fn parse_redis_csv(csv: &str) -> Vec<(String, f64, f64)> {
    let mut header: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in csv.lines() {
        let f: Vec<String> = line
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .collect();
        if f.first().is_some_and(|x| x == "test") {
            header = f;
            continue;
        }
        let col =
            |name: &str, default: usize| header.iter().position(|h| h == name).unwrap_or(default);
        let (Some(test), Some(rps)) =
            (f.first(), f.get(col("rps", 1)).and_then(|x| x.parse().ok()))
        else {
            continue;
        };
        let p50 = f
            .get(col("p50_latency_ms", 4))
            .and_then(|x| x.parse().ok())
            .unwrap_or(f64::NAN);
        if REDIS_TESTS.contains(&test.as_str()) {
            out.push((test.clone(), rps, p50));
        }
    }
    out
}

const REDIS_HEADER: [&str; 6] = [
    "test",
    "direct rps",
    "VIP rps",
    "VIP / direct rps",
    "direct p50 ms",
    "VIP p50 ms",
];

fn redis_summary(
    direct: &[RedisRun],
    vip: &[RedisRun],
    check: &str,
    a: &RedisArgs,
    load_before: &str,
    machine: &str,
) -> (String, String) {
    let (both, both_verdict) = both_row(direct, vip);
    let mut rows = Vec::new();
    let mut verdicts = vec![both_verdict];
    for test in REDIS_TESTS {
        let (row, verdict) = test_row(direct, vip, test);
        rows.push(row);
        verdicts.push(verdict);
    }
    let (cpu, cpu_line) = cpu_row(direct, vip);
    rows.extend([both, cpu]);
    let how = format!(
        "`redis-benchmark -t set,get -n {} -c {} --csv`, {} runs per path alternating ABBA; medians (min-max); the ratio is the median of the per-pair ratios",
        a.requests, a.clients, a.rounds
    );
    let text = format!(
        "persistent connections, {how}\n{}{}\n{cpu_line}\n{check}\nmachine before: {load_before}\nmachine after:  {machine}\n",
        report::table(&REDIS_HEADER, &rows),
        verdicts.join("\n"),
    );
    let md = format!(
        "## Persistent-connection throughput: redis-benchmark through a VIP\n\n\
         `cargo xtask bench redis --requests {} --clients {} --rounds {}` on {{date}}: {how}. One `redis-server` \
         ({REDIS_BACKEND_IP}:{REDIS_PORT}, no persistence) in a sandbox netns; `redis-benchmark` in the agent's \
         child cgroup, to the backend (direct) or to the VIP {REDIS_VIP_IP}:{REDIS_PORT}. The connect4 hook runs \
         once per connection, never per request, so the goal is parity.\n\n{}\n{}.\n\n{cpu_line}.\n\n{check}.\n\n\
         Machine: {machine} (before the run: {load_before}).\n",
        a.requests,
        a.clients,
        a.rounds,
        report::md_table(&REDIS_HEADER, &rows),
        verdicts.join(".\n"),
    );
    (text, md)
}

/// One test's values over the runs: `f` picks rps or p50 from its entry.
fn column(runs: &[RedisRun], test: &str, f: fn(&(String, f64, f64)) -> f64) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| r.tests.iter().find(|x| x.0 == test).map(f))
        .collect()
}

/// `label VIP/direct = r (goal ..): met`, or what it is short by and `why`.
fn throughput_verdict(label: &str, r: &Ratios, why: &str) -> String {
    let ok = r.median >= THROUGHPUT_GOAL;
    let mut s = format!(
        "{label} VIP/direct = {:.3}x (goal >= {THROUGHPUT_GOAL:.2}x): {}",
        r.median,
        met(ok)
    );
    if !ok {
        let short = (THROUGHPUT_GOAL - r.median) * 100.0;
        let _ = write!(s, " (short by {short:.1} %; {why})");
    }
    s
}

/// One test's row and verdict; the ratio is per ABBA pair (the runs next to
/// each other in time).
fn test_row(direct: &[RedisRun], vip: &[RedisRun], test: &str) -> (Vec<String>, String) {
    let (d, v) = (column(direct, test, |x| x.1), column(vip, test, |x| x.1));
    let r = Ratios::paired(&v, &d);
    let row = vec![
        test.to_string(),
        med_range(&d, 0),
        med_range(&v, 0),
        r.cell(),
        med_range(&column(direct, test, |x| x.2), 3),
        med_range(&column(vip, test, |x| x.2), 3),
    ];
    let why = format!(
        "the VIP costs one hook run per connect(), none per request, so a gap here is the machine's other load, not the path: compare the pair range {} and the per-CPU-second ratio below",
        r.range()
    );
    (row, throughput_verdict(test, &r, &why))
}

/// Both tests together: all requests over the wall time of both, per run.
fn both_row(direct: &[RedisRun], vip: &[RedisRun]) -> (Vec<String>, String) {
    let both = |runs: &[RedisRun]| -> Vec<f64> {
        runs.iter()
            .map(|r| r.tests.len() as f64 / r.tests.iter().map(|x| 1.0 / x.1).sum::<f64>())
            .collect()
    };
    let r = Ratios::paired(&both(vip), &both(direct));
    let row = vec![
        "SET + GET (all requests / wall time of both)".into(),
        med_range(&both(direct), 0),
        med_range(&both(vip), 0),
        r.cell(),
        "-".into(),
        "-".into(),
    ];
    let why = format!(
        "no per-request work on the VIP path, so the machine's other load: pairs {}",
        r.range()
    );
    (row, throughput_verdict("SET + GET", &r, &why))
}

/// Requests per CPU-second (client + server), per ABBA pair: what each
/// request costs, which other work on the machine does not change.
fn cpu_row(direct: &[RedisRun], vip: &[RedisRun]) -> (Vec<String>, String) {
    let cpu = |runs: &[RedisRun]| runs.iter().map(|r| r.per_cpu_s).collect::<Vec<f64>>();
    let r = Ratios::paired(&cpu(vip), &cpu(direct));
    let row = vec![
        "both, per CPU-second (client + server)".into(),
        med_range(&cpu(direct), 0),
        med_range(&cpu(vip), 0),
        r.cell(),
        "-".into(),
        "-".into(),
    ];
    let line = format!(
        "Requests per CPU-second (redis-benchmark's cgroup `cpu.stat` + redis-server's utime+stime): VIP/direct {:.3}x \
         (pairs {}): the cost per request, which the machine's other load does not move the way it moves requests per wall-clock second",
        r.median,
        r.range()
    );
    (row, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"98039.22\",\"0.275\",\"0.080\",\"0.263\",\"0.391\",\"0.551\",\"1.351\"\n\
                   \"GET\",\"100000.00\",\"0.270\",\"0.080\",\"0.255\",\"0.383\",\"0.543\",\"0.975\"\n";
        let r = parse_redis_csv(csv);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "SET");
        assert!((r[0].1 - 98039.22).abs() < 1e-6 && (r[0].2 - 0.263).abs() < 1e-9);
        assert_eq!(r[1].0, "GET");
    }

    fn run(set: f64, get: f64, per_cpu_s: f64) -> RedisRun {
        RedisRun {
            tests: vec![("SET".into(), set, 0.25), ("GET".into(), get, 0.24)],
            per_cpu_s,
        }
    }

    /// The whole report for fixed runs: any change to its text is deliberate
    /// (on a mismatch the new text is in /tmp/l4lb-redis-summary.txt).
    #[test]
    fn summary_text_is_stable() {
        let direct = [
            run(100_000.0, 110_000.0, 50_000.0),
            run(96_000.0, 104_000.0, 48_000.0),
        ];
        let vip = [
            run(99_000.0, 108_000.0, 50_500.0),
            run(97_000.0, 99_000.0, 47_000.0),
        ];
        let a = RedisArgs {
            requests: 50_000,
            clients: 50,
            rounds: 2,
            write: false,
        };
        let (text, md) = redis_summary(&direct, &vip, "CHECK", &a, "LOAD", "MACHINE");
        let got = format!("{text}\n----\n{md}");
        let want = include_str!("testdata/redis_summary.txt");
        if got != want {
            let _ = std::fs::write("/tmp/l4lb-redis-summary.txt", &got);
        }
        assert_eq!(got, want);
    }
}
