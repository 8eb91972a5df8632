//! `cargo xtask demo`: three redis-server backends behind the VIP 11.0.0.1:6379,
//! 300 redis-cli connections to the VIP, and how they spread. Everything runs
//! in a throw-away sandbox (netns with only lo + child cgroup + own pin root)
//! that is removed on exit, error or Ctrl-C.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_common::SERVICES_MAP;
use l4lb_tests::{Agent, Sandbox, agent_bin};

use crate::{interrupt, preflight, report, util};

const BACKENDS: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const VIP_HOST: &str = "11.0.0.1";
const PORT: &str = "6379";
const CONNECTIONS: usize = 300;

pub fn run(config: Option<PathBuf>) -> Result<()> {
    let config = config.unwrap_or_else(|| util::workspace_root().join("examples/demo.yaml"));
    let yaml = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    // The README's one command on a fresh machine: install what is missing first (idempotent).
    crate::setup::run_setup()?;
    preflight::kernel_task(false)?;
    let vips = count_vips(&config)?;
    interrupt::install();
    let mut sb = Sandbox::new("demo")?;
    println!(
        "sandbox: netns {}, cgroup {}, pin root {}",
        sb.netns(),
        sb.cgroup().display(),
        sb.pin_root().display()
    );
    // The sandbox is dropped after this returns, Ok or not: that kills what it
    // spawned, removes the cgroup, the netns and the pin root.
    demo(&mut sb, &config, &yaml, vips)
}

fn demo(sb: &mut Sandbox, config: &Path, yaml: &str, vips: usize) -> Result<()> {
    for ip in BACKENDS {
        start_redis(sb, ip)?;
    }
    for ip in BACKENDS {
        wait_redis(sb, ip)?;
    }
    println!(
        "backends: redis-server on {} (port {PORT}) in the netns",
        BACKENDS.join(", ")
    );
    interrupt::check()?;

    // Stopped (SIGTERM + teardown) before the sandbox goes, on every path.
    let mut agent = Agent::start(sb, yaml)?;
    println!(
        "agent: l4lb-agent run --config {} (a copy of {}) --cgroup {} --pin-root {}",
        agent.config_path().display(),
        config.display(),
        sb.cgroup().display(),
        sb.pin_root().display()
    );
    let result = with_agent(sb, &agent, vips);
    let stopped = agent.stop();
    result?;
    stopped?;
    println!("\nagent stopped and torn down; removing the sandbox");
    Ok(())
}

fn with_agent(sb: &Sandbox, agent: &Agent, vips: usize) -> Result<()> {
    agent.wait_vips(vips, Duration::from_secs(30))?;
    println!("agent: {vips} VIPs installed\n");
    interrupt::check()?;

    let spread = connect_many(sb)?;
    print_spread(&spread);
    println!("\n$ l4lb-agent vips --pin-root {}", sb.pin_root().display());
    print!(
        "{}",
        util::stdout(
            sb.in_netns(agent_bin())
                .arg("vips")
                .arg("--pin-root")
                .arg(sb.pin_root())
        )?
    );
    print_services_map(sb.pin_root())?;

    let failed = spread.get("failed").copied().unwrap_or(0);
    if failed > 0 {
        bail!(
            "{failed} of {CONNECTIONS} connections to {VIP_HOST}:{PORT} failed (is that VIP in the config?)"
        );
    }
    Ok(())
}

/// The number of VIPs the config declares, from `l4lb-agent check --json`
/// (which also validates it before anything is started).
fn count_vips(config: &Path) -> Result<usize> {
    let out = util::stdout(
        std::process::Command::new(agent_bin())
            .arg("check")
            .arg("--config")
            .arg(config)
            .arg("--json"),
    )
    .with_context(|| format!("validating {}", config.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&out).context("parsing `l4lb-agent check --json`")?;
    Ok(v.as_array().map_or(1, |a| a.len().max(1)))
}

fn start_redis(sb: &mut Sandbox, ip: &str) -> Result<()> {
    let log = sb.workdir().join(format!("redis-{ip}.log"));
    let mut cmd = sb.redis_server_cmd(ip, PORT.parse()?);
    cmd.arg("--dir")
        .arg(sb.workdir())
        .arg("--logfile")
        .arg(&log);
    sb.spawn(cmd)
        .with_context(|| "starting redis-server (run `cargo xtask setup`)")?;
    Ok(())
}

fn wait_redis(sb: &Sandbox, ip: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        interrupt::check()?;
        let out = util::output_timeout(
            sb.in_netns("redis-cli")
                .args(["-h", ip, "-p", PORT, "PING"]),
            Duration::from_secs(2),
        );
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(sb.workdir().join(format!("redis-{ip}.log")))
                .unwrap_or_default();
            bail!("redis-server on {ip}:{PORT} did not answer PING within 10 s; log:\n{log}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One redis-cli per connection, from inside the netns and the cgroup. The
/// server's `laddr` in CLIENT INFO is the backend that really accepted it.
fn connect_many(sb: &Sandbox) -> Result<BTreeMap<String, usize>> {
    println!(
        "client: {CONNECTIONS} x `redis-cli -h {VIP_HOST} -p {PORT} CLIENT INFO` in the cgroup"
    );
    let mut spread = BTreeMap::new();
    let mut first_error = None;
    let started = Instant::now();
    for _ in 0..CONNECTIONS {
        interrupt::check()?;
        let out = util::output_timeout(
            sb.in_cgroup("redis-cli")
                .args(["-h", VIP_HOST, "-p", PORT, "CLIENT", "INFO"]),
            Duration::from_secs(5),
        );
        let who = match &out {
            Ok(o) if o.status.success() => laddr(&String::from_utf8_lossy(&o.stdout)),
            _ => None,
        };
        let key = who.unwrap_or_else(|| {
            first_error.get_or_insert_with(|| match &out {
                Ok(o) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => format!("{e:#}"),
            });
            "failed".to_string()
        });
        *spread.entry(key).or_insert(0) += 1;
    }
    println!("client: done in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(e) = first_error {
        println!("client: first failure: {}", e.trim());
    }
    Ok(spread)
}

/// `laddr=127.0.0.3:6379` from a CLIENT INFO line.
fn laddr(info: &str) -> Option<String> {
    info.split_whitespace()
        .find_map(|f| f.strip_prefix("laddr="))
        .map(str::to_string)
}

fn print_spread(spread: &BTreeMap<String, usize>) {
    let total: usize = spread.values().sum();
    let rows: Vec<Vec<String>> = spread
        .iter()
        .map(|(backend, n)| {
            let pct = 100.0 * *n as f64 / total.max(1) as f64;
            vec![
                backend.clone(),
                n.to_string(),
                format!("{pct:.1}%"),
                "#".repeat((pct / 2.0).round() as usize),
            ]
        })
        .collect();
    println!("\nconnections to {VIP_HOST}:{PORT} by backend that answered:");
    print!(
        "{}",
        report::table(&["backend", "conns", "share", ""], &rows)
    );
}

/// An excerpt of `bpftool map dump pinned <pin root>/…/L4LB_SERVICES`.
fn print_services_map(pin_root: &Path) -> Result<()> {
    const LINES: usize = 40;
    let Some(pin) = find_pin(pin_root, SERVICES_MAP, 3) else {
        println!(
            "\n(no pinned {} under {})",
            SERVICES_MAP,
            pin_root.display()
        );
        return Ok(());
    };
    println!("\n$ bpftool map dump pinned {}", pin.display());
    let out = util::stdout(
        std::process::Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(&pin),
    )?;
    let lines: Vec<&str> = out.lines().collect();
    for l in lines.iter().take(LINES) {
        println!("{l}");
    }
    if lines.len() > LINES {
        println!("… ({} more lines)", lines.len() - LINES);
    }
    // The kernel programs keep what they read from the socket: network order.
    println!(
        "(addr words and port are in network byte order: 16777227 = 11.0.0.1, 60184 = port 6379)"
    );
    Ok(())
}

/// The pin named `name` at most `depth` directories below `dir` (the agent
/// may version its pin layout).
fn find_pin(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries: Vec<_> = std::fs::read_dir(dir).ok()?.flatten().collect();
    if let Some(e) = entries.iter().find(|e| e.file_name() == name) {
        return Some(e.path());
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| find_pin(&e.path(), name, depth - 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn laddr_from_client_info() {
        let line = "id=3 addr=127.0.0.1:41234 laddr=127.0.0.3:6379 fd=8 name= age=0\n";
        assert_eq!(super::laddr(line).as_deref(), Some("127.0.0.3:6379"));
        assert_eq!(super::laddr("ERR unknown command"), None);
    }
}
