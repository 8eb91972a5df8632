//! `cargo xtask bench` (no subcommand) = `cargo xtask bench all`: builds
//! release binaries once, then runs every benchmark as its own
//! `xtask bench <name> --write` process (one failing is recorded and the rest
//! go on; each is killed after its time limit, SIGTERM first so it cleans its
//! sandboxes), and writes a summary section at the top of BENCHMARKS.md.
//!
//! Also `cargo xtask bench profile`: callgrind on the agent's full sync of
//! 10,000 VIPs (config parse → plan → Maglev tables → map writes, in a
//! sandbox), callgrind on `l4lb-agent check` of the same file (no root
//! needed), and the loaded BPF programs' sizes from bpftool.
use std::{
    fmt::Write as _,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use l4lb_tests::{Agent, Sandbox, agent_bin};
use serde_json::Value;

use super::common::{git_rev, run_in};
use crate::{
    interrupt, preflight,
    report::{self, machine_line, today},
    util,
};

const SECTION: &str = "xtask bench all";
const SECTION_PROFILE: &str = "xtask bench profile";

#[derive(clap::Args, Clone, Debug)]
pub struct AllArgs {
    /// Rounds for socket, peers and scaling (>= 5 to write); redis runs 3x as many short pairs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Small counts everywhere and no BENCHMARKS.md writes: checks that every
    /// benchmark runs, in a few minutes.
    #[arg(long)]
    pub quick: bool,
    /// Skip a benchmark (socket, peers, redis, scaling, xdp, marathon, mesos, dns, failover, profile, fleet, xdp-cpu, churn); repeatable.
    #[arg(long)]
    pub skip: Vec<String>,
    /// Run only these benchmarks (same names); repeatable.
    #[arg(long)]
    pub only: Vec<String>,
    /// Time limit of one benchmark, minutes.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub step_minutes: u64,
    /// Time limit of the whole run, minutes (later benchmarks are skipped).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=180))]
    pub total_minutes: u64,
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    a: AllArgs,
}

impl Default for AllArgs {
    fn default() -> Self {
        Defaults::parse_from(["all"]).a
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ProfileArgs {
    /// VIPs in the synced file.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub vips: u32,
    /// Functions listed per profile.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub top: u32,
    /// Also replace this section in BENCHMARKS.md.
    #[arg(long)]
    pub write: bool,
}

struct Step {
    name: &'static str,
    args: Vec<String>,
}

/// Every benchmark with its arguments: `quick` for `--quick`, else `full`
/// (space-separated). Each collects its own section's verdicts.
fn steps(a: &AllArgs) -> Vec<Step> {
    let r = a.rounds;
    let table: [(&'static str, String, String); 13] = [
        (
            "socket",
            "--iterations 500 --rounds 2".into(),
            format!("--iterations 5000 --rounds {r}"),
        ),
        (
            "peers",
            "--iterations 300 --rounds 2".into(),
            format!("--iterations 3000 --rounds {r}"),
        ),
        (
            "redis",
            "--requests 20000 --rounds 2".into(),
            format!("--requests 50000 --clients 50 --rounds {}", r * 3),
        ),
        (
            "scaling",
            "--services 10,1000 --iterations 300 --rounds 2".into(),
            format!("--iterations 2000 --rounds {r}"),
        ),
        (
            "xdp",
            "--rounds 1 --seconds 1".into(),
            "--rounds 3 --seconds 3".into(),
        ),
        (
            "marathon",
            "--apps 500 --event-apps 100 --events 20 --runs 1".into(),
            String::new(),
        ),
        (
            "mesos",
            "--tasks 500 --events 8 --runs 1".into(),
            String::new(),
        ),
        ("dns", "--seconds 2 --runs 1".into(), String::new()),
        // ~2 min: 4 nodes, 2 deaths per policy with no Marathon event, then
        // 4 s of slow-backend load per policy.
        (
            "failover",
            "--nodes 3 --runs 1 --no-event --after-ms 2000 --slow-seconds 2".into(),
            "--nodes 4 --runs 2 --no-event --after-ms 3000 --slow-seconds 4".into(),
        ),
        ("profile", "--vips 1000".into(), String::new()),
        // ~2 min: one fleet of 5 nodes on 1,000 apps, resyncs every 10 s.
        (
            "fleet",
            "--nodes 3 --apps 200 --changes 4 --steady-secs 5 --resync-secs 5".into(),
            "--nodes 5 --changes 10 --steady-secs 20 --resync-secs 10".into(),
        ),
        // ~3 min: 5 modes x 3 rounds x (5 s idle + 5 s paced flood).
        (
            "xdp-cpu",
            "--rounds 1 --seconds 2".into(),
            "--rounds 3 --seconds 5".into(),
        ),
        // ~6 min: 5 targets x 60 s of churn, each in a fresh sandbox.
        ("churn", "--quick".into(), "--seconds 60".into()),
    ];
    table
        .into_iter()
        .map(|(name, quick, full)| Step {
            name,
            args: if a.quick { quick } else { full }
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

struct Outcome {
    name: &'static str,
    command: String,
    status: String,
    ok: bool,
    secs: f64,
}

pub fn run(a: AllArgs) -> Result<()> {
    if !a.quick && a.rounds < 5 {
        bail!(
            "the report records medians of at least 5 runs: use --rounds 5 or more (or --quick, which writes nothing)"
        );
    }
    let started = Instant::now();
    let budget = Duration::from_secs(a.total_minutes * 60);
    preflight::kernel_task(true)?;
    interrupt::install();
    let load_before = machine_line();
    let rev_at_start = git_rev();
    let exe = std::env::current_exe().context("current_exe")?;
    let known: Vec<&str> = steps(&a).iter().map(|s| s.name).collect();
    for n in a.skip.iter().chain(&a.only) {
        if !known.contains(&n.as_str()) {
            bail!("unknown benchmark {n:?} (known: {})", known.join(", "));
        }
    }
    let mut outcomes = Vec::new();
    let all_steps = steps(&a);
    for step in &all_steps {
        let selected = (a.only.is_empty() || a.only.iter().any(|n| n == step.name))
            && !a.skip.iter().any(|n| n == step.name);
        let mut args = vec!["bench".to_string(), step.name.to_string()];
        args.extend(step.args.iter().cloned());
        if !a.quick {
            args.push("--write".into());
        }
        let command = format!("cargo xtask {}", args.join(" "));
        if !selected {
            continue;
        }
        if interrupt::check().is_err() {
            outcomes.push(Outcome {
                name: step.name,
                command,
                status: "not run: interrupted".into(),
                ok: false,
                secs: 0.0,
            });
            continue;
        }
        let left = budget.saturating_sub(started.elapsed());
        if left < Duration::from_secs(30) {
            outcomes.push(Outcome {
                name: step.name,
                command,
                status: format!("not run: the {} min budget was used up", a.total_minutes),
                ok: false,
                secs: 0.0,
            });
            continue;
        }
        let limit = Duration::from_secs(a.step_minutes * 60).min(left);
        println!(
            "\n===== bench {} ({command}; limit {:.0} min)",
            step.name,
            limit.as_secs_f64() / 60.0
        );
        let t = Instant::now();
        let status = run_step(&exe, &args, limit);
        let secs = t.elapsed().as_secs_f64();
        let (ok, status) = match status {
            Ok(()) => (true, "ok".to_string()),
            Err(e) => (false, format!("FAILED: {e:#}")),
        };
        println!("===== bench {}: {status} ({secs:.0} s)", step.name);
        outcomes.push(Outcome {
            name: step.name,
            command,
            status,
            ok,
            secs,
        });
    }
    let total = started.elapsed().as_secs_f64();
    let (text, md) = summary(
        &a,
        &outcomes,
        total,
        &load_before,
        &machine_line(),
        &rev_at_start,
    );
    print!("\n{text}");
    if !a.quick {
        write_summary(&md)?;
    }
    if outcomes.iter().any(|o| !o.ok) {
        bail!("some benchmarks failed or did not run (see above)");
    }
    Ok(())
}

/// Runs `xtask ARGS` with inherited output; on timeout SIGTERM (its
/// interrupt handler cleans up its sandboxes), then SIGKILL after 60 s.
fn run_step(exe: &Path, args: &[String], limit: Duration) -> Result<()> {
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(util::workspace_root())
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let deadline = Instant::now() + limit;
    let mut termed: Option<Instant> = None;
    loop {
        if let Some(st) = child.try_wait()? {
            if termed.is_some() {
                bail!(
                    "timed out after {:.0} min (stopped)",
                    limit.as_secs_f64() / 60.0
                );
            }
            if !st.success() {
                bail!("exited with {st}");
            }
            return Ok(());
        }
        let now = Instant::now();
        match termed {
            None if now >= deadline || interrupt::check().is_err() => {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                termed = Some(now);
            }
            Some(t) if now.duration_since(t) > Duration::from_secs(60) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "timed out after {:.0} min; killed",
                    limit.as_secs_f64() / 60.0
                );
            }
            _ => {}
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Sentences with "goal" from a section of BENCHMARKS.md.
fn verdicts(doc: &str, section: &str) -> Vec<String> {
    let (b, e) = (
        format!("<!-- BEGIN {section} -->"),
        format!("<!-- END {section} -->"),
    );
    let (Some(i), Some(j)) = (doc.find(&b), doc.find(&e)) else {
        return vec![];
    };
    if j < i {
        return vec![];
    }
    let body = &doc[i + b.len()..j];
    let mut out = Vec::new();
    for line in body
        .lines()
        .filter(|l| l.contains("goal") && !l.starts_with('|'))
    {
        for part in split_outside_parens(line) {
            let p = part.trim().trim_end_matches('.');
            if p.contains("goal") && (p.contains("met") || p.contains("NOT")) {
                out.push(p.to_string());
            }
        }
    }
    out
}

/// Splits at ". " and "; " that are not inside parentheses.
fn split_outside_parens(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth <= 0 && (c == '.' || c == ';') && it.peek() == Some(&' ') {
            out.push(std::mem::take(&mut cur));
            it.next();
            continue;
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn summary(
    a: &AllArgs,
    outcomes: &[Outcome],
    total: f64,
    load_before: &str,
    machine: &str,
    rev_at_start: &str,
) -> (String, String) {
    let doc =
        std::fs::read_to_string(util::workspace_root().join("BENCHMARKS.md")).unwrap_or_default();
    let header = [
        "benchmark",
        "command",
        "result",
        "s",
        "verdicts (details in its section)",
    ];
    let mut rows = Vec::new();
    for o in outcomes {
        // Each benchmark writes the section `xtask bench <name>`.
        let v: Vec<String> = if o.ok {
            verdicts(&doc, &format!("xtask bench {}", o.name))
        } else {
            vec![]
        };
        rows.push(vec![
            o.name.to_string(),
            format!("`{}`", o.command),
            o.status.replace('\n', " ").replace('|', "/"),
            format!("{:.0}", o.secs),
            if v.is_empty() {
                "-".into()
            } else {
                v.join("<br>")
            },
        ]);
    }
    let plots: Vec<String> = [
        "scaling.png",
        "scaling_ratio.png",
        "scaling.svg",
        "scaling_ratio.svg",
    ]
    .iter()
    .filter(|f| util::workspace_root().join("docs/plots").join(f).exists())
    .map(|f| format!("[{f}](docs/plots/{f})"))
    .collect();
    let mut cmd = "cargo xtask bench".to_string();
    if a.rounds != 5 {
        let _ = write!(cmd, " --rounds {}", a.rounds);
    }
    let text = format!(
        "bench all: {:.0} s\n{}machine before: {load_before}\nmachine after:  {machine}\n",
        total,
        report::table(
            &["benchmark", "result", "s"],
            &outcomes
                .iter()
                .map(|o| vec![
                    o.name.to_string(),
                    o.status.lines().next().unwrap_or("").to_string(),
                    format!("{:.0}", o.secs)
                ])
                .collect::<Vec<_>>()
        )
    );
    let md = format!(
        "## Summary (`{cmd}`)\n\n\
         `{cmd}` on {{date}} ({rev_at_start} at the start): release build, then every benchmark below as its own process, each in its own \
         network namespaces and child cgroup (peers configured only there), {total:.0} s in all. Numbers are \
         medians of >= 5 runs with min-max unless a section says otherwise; each section names its command and \
         machine load. Other work shares this machine's 2 cores (builds, fuzzing): the load average before and \
         after is below and in each section.\n\n{}\nPlots: {}.\n\nMachine: {machine} (before the run: {load_before}).\n",
        report::md_table(&header, &rows),
        if plots.is_empty() {
            "none written".to_string()
        } else {
            plots.join(", ")
        },
    );
    (text, md)
}

/// The summary goes right below the title (replaced in place on later runs).
fn write_summary(md: &str) -> Result<()> {
    let path = util::workspace_root().join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let begin = format!("<!-- BEGIN {SECTION} -->");
    if old.contains(&begin) || !old.starts_with("# ") {
        return report::write_section(SECTION, md, &today());
    }
    let body = md.replace("{date}", &today());
    let (title, rest) = old.split_once('\n').unwrap_or((&old, ""));
    let new = format!(
        "{title}\n\n{begin}\n{}\n<!-- END {SECTION} -->\n{}",
        body.trim_end(),
        if rest.starts_with('\n') {
            rest.to_string()
        } else {
            format!("\n{rest}")
        }
    );
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote section \"{SECTION}\" of {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------
// bench profile

/// N VIPs with 3 backends each (3 → a 503-slot Maglev table), backends shared
/// in groups so the backends map is realistic.
fn profile_yaml(n: u32) -> String {
    let mut s = String::from("vips:\n");
    for i in 0..n {
        let b = |k: u32| {
            let j = (i * 3 + k) % 60_000;
            format!(
                "\"127.{}.{}.{}:8080\"",
                2 + j / 62_500,
                (j % 62_500) / 250,
                j % 250 + 1
            )
        };
        let _ = writeln!(
            s,
            "  - {{vip: \"11.{}.{}.{}:80\", backends: [{}, {}, {}]}}",
            1 + i / 62_500,
            (i % 62_500) / 250,
            i % 250 + 1,
            b(0),
            b(1),
            b(2)
        );
    }
    s
}

pub fn profile(a: ProfileArgs) -> Result<()> {
    preflight::kernel_task(true)?;
    interrupt::install();
    for tool in ["valgrind", "callgrind_annotate"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} not found: apt-get install valgrind (cargo xtask setup)");
        }
    }
    let started = Instant::now();
    let load_before = machine_line();
    let agent = agent_bin();
    let mut sb = Sandbox::new("profile")?;
    let dir = sb.workdir().to_path_buf();
    let yaml = profile_yaml(a.vips);
    let cfg = dir.join("vips.yaml");
    std::fs::write(&cfg, &yaml)?;

    // 1. check: parse + validate + desired state, no kernel.
    let check_out = dir.join("callgrind.check");
    let t = Instant::now();
    run_in(
        Command::new("valgrind")
            .args(["--tool=callgrind", "--dump-instr=no"])
            .arg(format!("--callgrind-out-file={}", check_out.display()))
            .arg(&agent)
            .args(["check", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null()),
        "valgrind l4lb-agent check",
    )?;
    let check_secs = t.elapsed().as_secs_f64();
    let check_top = top_n(&annotate(&check_out)?, a.top);

    // 2. run: the real full sync under callgrind, in the sandbox.
    let wrapper = dir.join("agent-under-callgrind.sh");
    let run_out = dir.join("callgrind.run");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# `run` under callgrind; every other subcommand (vips, teardown) as is.\n\
             if [ \"$1\" = run ]; then exec valgrind --tool=callgrind --dump-instr=no --callgrind-out-file={} {} \"$@\"; fi\n\
             exec {} \"$@\"\n",
            run_out.display(),
            agent.display(),
            agent.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    // SAFETY: set before this process starts threads of its own (the harness
    // reads it when starting the agent).
    unsafe { std::env::set_var("L4LB_AGENT_BIN", &wrapper) };
    let t = Instant::now();
    let mut ag =
        Agent::start_with_args(&mut sb, &yaml, &["--no-metrics", "--max-slots", "8388608"])?;
    let applied = wait_log(&ag, &format!("added={}", a.vips), Duration::from_secs(600));
    let sync_secs = t.elapsed().as_secs_f64();
    let took = applied.as_ref().ok().and_then(|l| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("took_us="))
            .and_then(|v| v.parse::<u64>().ok())
    });
    let progs = bpf_programs(&sb);
    let stopped = ag.stop();
    unsafe { std::env::set_var("L4LB_AGENT_BIN", &agent) };
    applied?;
    stopped?;
    let run_all = annotate(&run_out)?;
    let run_top = top_n(&run_all, a.top);
    let run_groups = groups(&run_all);
    drop(sb);

    let progs = progs.unwrap_or_else(|e| vec![vec![format!("bpftool: {e:#}")]]);
    let (text, md) = profile_summary(
        &a,
        check_secs,
        sync_secs,
        took,
        &check_top,
        &run_top,
        &run_groups,
        &progs,
        &load_before,
    );
    print!("\n{text}");
    println!("(took {:.0} s)", started.elapsed().as_secs_f64());
    if a.write {
        report::write_section(SECTION_PROFILE, &md, &today())?;
    }
    Ok(())
}

fn wait_log(agent: &Agent, want: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = agent.log();
        if let Some(l) = log
            .lines()
            .find(|l| l.contains("table applied") && l.contains(want))
        {
            return Ok(l.to_string());
        }
        if Instant::now() >= deadline {
            let lines: Vec<&str> = log.lines().collect();
            bail!(
                "no `table applied {want}` within {timeout:?}: {}",
                lines[lines.len().saturating_sub(20)..].join("\n")
            );
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(200));
    }
}

/// (Ir, share %, function) rows of `callgrind_annotate` (self cost), one
/// function's costs summed over the files it was inlined from, sorted, after
/// a first row with the program total. (Inclusive costs are not used: with
/// tokio's threads and recursion callgrind counts some frames more than once.)
fn annotate(out: &Path) -> Result<Vec<(u64, f64, String)>> {
    let text = util::stdout(
        Command::new("callgrind_annotate")
            .args(["--threshold=100", "--auto=no"])
            .arg(out),
    )?;
    let num = |s: &str| s.replace(',', "").parse::<u64>().ok();
    let total = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(num)
        .context("no PROGRAM TOTALS in callgrind_annotate output")?;
    let mut by_fn: std::collections::BTreeMap<String, u64> = Default::default();
    let mut in_table = false;
    for l in text.lines() {
        if l.contains("file:function") {
            in_table = true;
            continue;
        }
        let l = l.trim();
        if !in_table || l.starts_with("--") {
            continue;
        }
        if l.is_empty() {
            // The function table ends at its first blank line.
            break;
        }
        // "1,234,567 (12.34%)  file:function [obj]" or "1,234,567  file:function"
        let mut it = l.splitn(2, ' ');
        let (Some(ir), Some(rest)) = (it.next().and_then(num), it.next()) else {
            continue;
        };
        let rest = rest.trim();
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map(|(_, x)| x.trim()).unwrap_or(r),
            None => rest,
        };
        let func = rest.split(" [").next().unwrap_or(rest);
        let func = func.split_once(':').map(|(_, f)| f).unwrap_or(func);
        let func = shorten(func);
        *by_fn.entry(func).or_default() += ir;
    }
    let mut rows: Vec<(u64, f64, String)> = by_fn
        .into_iter()
        .map(|(f, ir)| (ir, ir as f64 * 100.0 / total as f64, f))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.insert(0, (total, 100.0, "PROGRAM TOTALS".to_string()));
    Ok(rows)
}

fn top_n(rows: &[(u64, f64, String)], n: u32) -> Vec<(u64, f64, String)> {
    rows.iter().take(n as usize + 1).cloned().collect()
}

/// Self costs summed by what the code is for (first match wins).
fn groups(rows: &[(u64, f64, String)]) -> Vec<(u64, f64, String)> {
    const GROUPS: &[(&str, &[&str])] = &[
        ("Maglev tables (l4lb_agent::slots)", &["l4lb_agent::slots"]),
        (
            "YAML parsing (serde-saphyr)",
            &["serde_saphyr", "granit_parser"],
        ),
        (
            "BTreeMap search/insert (alloc::collections::btree)",
            &["btree"],
        ),
        (
            "malloc, free, memcpy, memset (libc)",
            &[
                "malloc",
                "free",
                "memcpy",
                "memset",
                "memmove",
                "realloc",
                "unlink_chunk",
            ],
        ),
        ("SHA-1 (sha1)", &["sha1::"]),
        ("BPF object load (aya, object)", &["aya", "object::"]),
        ("dynamic loader", &["_dl_", "do_lookup", "dl_"]),
        ("other agent code (l4lb_agent)", &["l4lb_agent"]),
    ];
    let total = rows.first().map_or(1, |r| r.0.max(1));
    let mut sums = vec![0u64; GROUPS.len() + 1];
    for (ir, _, f) in rows.iter().skip(1) {
        let i = GROUPS
            .iter()
            .position(|(_, pats)| pats.iter().any(|p| f.contains(p)))
            .unwrap_or(GROUPS.len());
        sums[i] += ir;
    }
    let mut out: Vec<(u64, f64, String)> = GROUPS
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(std::iter::once(
            "everything else (std, tokio, syscalls, ...)".to_string(),
        ))
        .zip(&sums)
        .map(|(n, &ir)| (ir, ir as f64 * 100.0 / total as f64, n))
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.0));
    out.insert(0, (total, 100.0, "PROGRAM TOTALS".into()));
    out
}

/// Drops generic arguments and hashes so a Rust symbol fits a table cell.
fn shorten(f: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in f.chars() {
        match c {
            '<' => {
                if depth == 0 {
                    out.push_str("<…>");
                }
                depth += 1;
            }
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = out.replace("<…><…>", "<…>");
    let out = match out.rfind("::h") {
        Some(i) if out[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) && out.len() - i == 19 => {
            out[..i].to_string()
        }
        _ => out,
    };
    out.replace('|', "/")
}

/// name, attach type, xlated bytes, jited bytes of the programs
/// attached to the sandbox's cgroup.
fn bpf_programs(sb: &Sandbox) -> Result<Vec<Vec<String>>> {
    let cg = util::stdout(
        Command::new("bpftool")
            .args(["cgroup", "show"])
            .arg(sb.cgroup())
            .arg("--json"),
    )?;
    let cg: Value = serde_json::from_str(&cg).context("bpftool cgroup show --json")?;
    let mut rows = Vec::new();
    for p in cg.as_array().into_iter().flatten() {
        let Some(id) = p["id"].as_u64() else { continue };
        let info = util::stdout(Command::new("bpftool").args([
            "prog",
            "show",
            "id",
            &id.to_string(),
            "--json",
        ]))?;
        let v: Value = serde_json::from_str(&info).context("bpftool prog show --json")?;
        rows.push(vec![
            v["name"].as_str().unwrap_or("?").to_string(),
            p["attach_type"].as_str().unwrap_or("?").to_string(),
            v["bytes_xlated"]
                .as_u64()
                .map_or("?".into(), |b| format!("{} ({} insns)", b, b / 8)),
            v["bytes_jited"]
                .as_u64()
                .map_or("?".into(), |b| b.to_string()),
        ]);
    }
    rows.sort();
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn profile_summary(
    a: &ProfileArgs,
    check_secs: f64,
    sync_secs: f64,
    took_us: Option<u64>,
    check_top: &[(u64, f64, String)],
    run_top: &[(u64, f64, String)],
    run_groups: &[(u64, f64, String)],
    progs: &[Vec<String>],
    load_before: &str,
) -> (String, String) {
    let rows = |t: &[(u64, f64, String)]| -> Vec<Vec<String>> {
        t.iter()
            .skip(1)
            .map(|(ir, pct, f)| vec![format!("`{f}`"), format!("{ir}"), format!("{pct:.1}")])
            .collect()
    };
    let h = ["function (self cost)", "instructions (Ir)", "% of total"];
    let total = |t: &[(u64, f64, String)]| t.first().map_or(0, |r| r.0);
    let ph = ["program", "attach", "xlated bytes", "jited bytes"];
    let hi = [
        "where the instructions go (self costs grouped)",
        "instructions (Ir)",
        "% of total",
    ];
    let text = format!(
        "callgrind, l4lb-agent run, full sync of {} VIPs ({} instructions in all; apply took_us under valgrind {:?}; {sync_secs:.0} s wall under valgrind):\n{}\n{}\n\
         callgrind, l4lb-agent check ({} instructions; {check_secs:.0} s under valgrind):\n{}\nBPF programs:\n{}",
        a.vips,
        total(run_top),
        took_us,
        report::table(&h, &rows(run_top)),
        report::table(&hi, &rows(run_groups)),
        total(check_top),
        report::table(&h, &rows(check_top)),
        report::table(&ph, progs),
    );
    let md = format!(
        "## Profile: the agent's full sync, and the BPF programs\n\n\
         `cargo xtask bench profile --vips {n}` on {{date}}: valgrind's callgrind (instruction counts, \
         exact and independent of machine load) on the release agent ({rev}). **Full sync**: `l4lb-agent run` in a \
         sandbox with a static file of {n} VIPs x 3 backends, from start to the first `table applied` \
         (config parse, plan, {n} Maglev tables of 503 slots, map writes), then SIGTERM; {} instructions in \
         all. **check**: `l4lb-agent check` of the same file (parse, validate, desired state; no kernel), {} \
         instructions. Self cost per function, top {top}:\n\n\
         Full sync (`run`), self cost:\n\n{}\nFull sync, self costs grouped by what the code is for:\n\n{}\n\
         `check`, self cost:\n\n{}\n\
         BPF programs attached to the sandbox cgroup (`bpftool prog show`: size after the verifier's rewrites, \
         JIT size; this bpftool (7.1) does not print the verifier's instruction count; `bpftool prog profile` \
         needs hardware perf counters, which this VM does not expose: `perf stat -e cycles` says not \
         supported). The socket path's \
         per-connect cost is measured end to end in the socket and peers sections.\n\n{}\nMachine: {} (before: {load_before}).\n",
        total(run_top),
        total(check_top),
        report::md_table(&h, &rows(run_top)),
        report::md_table(&hi, &rows(run_groups)),
        report::md_table(&h, &rows(check_top)),
        report::md_table(&ph, progs),
        machine_line(),
        n = a.vips,
        top = a.top,
        rev = git_rev(),
    );
    (text, md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let a = AllArgs::default();
        assert_eq!(a.rounds, 5);
        assert!(!a.quick && a.skip.is_empty());
        let names: Vec<&str> = steps(&a).iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "socket", "peers", "redis", "scaling", "xdp", "marathon", "mesos", "dns",
                "failover", "profile", "fleet", "xdp-cpu", "churn"
            ]
        );
    }

    #[test]
    fn each_mode_passes_its_own_arguments() {
        let full = AllArgs::default();
        let quick = AllArgs {
            quick: true,
            ..AllArgs::default()
        };
        let args = |a: &AllArgs, name: &str| {
            steps(a)
                .into_iter()
                .find(|s| s.name == name)
                .unwrap()
                .args
                .join(" ")
        };
        assert_eq!(
            args(&full, "redis"),
            "--requests 50000 --clients 50 --rounds 15"
        );
        assert_eq!(args(&quick, "redis"), "--requests 20000 --rounds 2");
        assert_eq!(args(&full, "marathon"), "");
        assert_eq!(args(&quick, "churn"), "--quick");
        assert_eq!(args(&full, "socket"), "--iterations 5000 --rounds 5");
    }

    #[test]
    fn verdict_lines() {
        let doc = "# B\n<!-- BEGIN xtask bench x -->\n| a (goal) |\nl4lb p50 = 1.01x (goal <= 1.03x): met; other (goal >= 2x): NOT met. Tail.\n\
                   flat +1.3 % (at 1000; goal: flat within 5 %): met; absolute +2 %.\n<!-- END xtask bench x -->\n";
        let v = verdicts(doc, "xtask bench x");
        assert_eq!(
            v,
            [
                "l4lb p50 = 1.01x (goal <= 1.03x): met",
                "other (goal >= 2x): NOT met",
                "flat +1.3 % (at 1000; goal: flat within 5 %): met"
            ]
        );
    }

    #[test]
    fn symbols_shortened() {
        assert_eq!(
            shorten("l4lb_agent::plan::diff<alloc::vec::Vec<u8>>::h0123456789abcdef"),
            "l4lb_agent::plan::diff<…>"
        );
    }

    #[test]
    fn profile_file() {
        let y = profile_yaml(2);
        assert_eq!(y.lines().count(), 3);
        assert!(y.contains("11.1.0.1:80") && y.contains("11.1.0.2:80"));
    }
}
