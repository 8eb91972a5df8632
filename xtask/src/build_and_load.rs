//! `cargo xtask build-and-load`: build the eBPF object and the agent, then
//! load and attach them with `l4lb-agent run`, print what is attached (cgroup
//! programs, pinned maps and links, the bpftool commands to look at them) and
//! leave it running under the agent until Ctrl-C or `--seconds`.
//!
//! `--sandbox` does it in a throwaway netns + child cgroup + pin root (all
//! removed at exit). Otherwise a cgroup is required, and the root cgroup and
//! this node's interfaces are refused unless `--on-this-node` is given: the
//! agent runs with the same guards the tests set (`L4LB_FORBID_ROOT_CGROUP`,
//! `L4LB_FORBID_HOST_NETNS`).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Agent, Sandbox, agent_bin};

use crate::{interrupt, setup, tasks};

/// How long the agent may take to attach its programs.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Clone, Debug, Default)]
pub struct LoadArgs {
    /// A throwaway netns + child cgroup + pin root, removed at exit.
    #[arg(long, conflicts_with_all = ["cgroup", "on_this_node"])]
    pub sandbox: bool,
    /// cgroup v2 directory whose processes are balanced (required without --sandbox).
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// bpffs directory for the pins (default: the agent's, /sys/fs/bpf/l4lb).
    #[arg(long)]
    pub pin_root: Option<PathBuf>,
    /// Allow the root cgroup and this node's own interfaces (XDP, tc).
    #[arg(long)]
    pub on_this_node: bool,
    /// Stop (agent down, sandbox removed) after this many seconds; default: at Ctrl-C.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: Option<u64>,
    /// Build with --release (and run that agent).
    #[arg(long)]
    pub release: bool,
    /// Use the binaries target/ already holds.
    #[arg(long)]
    pub no_build: bool,
    /// `l4lb-agent run` arguments: the source (`--config F`, `--marathon URL`,
    /// `--mesos URL`), DNS, XDP… Default: `--demo`.
    #[arg(last = true)]
    pub agent_args: Vec<String>,
}

/// What the agent attached, as printed.
#[derive(Debug, Default)]
pub struct Loaded {
    pub cgroup: PathBuf,
    pub programs: Vec<String>,
    pub maps: Vec<String>,
    pub links: Vec<String>,
}

pub fn run(args: LoadArgs) -> Result<Loaded> {
    if !args.no_build {
        setup::require()?;
        tasks::build(args.release)?;
    }
    let agent_args = if args.agent_args.is_empty() {
        vec!["--demo".to_owned()]
    } else {
        args.agent_args.clone()
    };
    interrupt::install();
    if args.sandbox {
        in_sandbox(&args, &agent_args)
    } else {
        on_node(&args, &agent_args)
    }
}

fn in_sandbox(args: &LoadArgs, agent_args: &[String]) -> Result<Loaded> {
    let mut sb = Sandbox::new("load")?;
    println!(
        "sandbox: netns {}, cgroup {}, pin root {}",
        sb.netns(),
        sb.cgroup().display(),
        sb.pin_root().display()
    );
    let argv: Vec<&str> = agent_args.iter().map(String::as_str).collect();
    // Stopped (SIGTERM + teardown) on drop; the sandbox goes after it.
    let mut agent = Agent::start_with_args(&mut sb, "", &argv)?;
    let loaded = wait_attached(sb.cgroup(), sb.pin_root(), || {
        agent.is_running().then_some(()).context("the agent exited")
    })
    .with_context(|| format!("agent log:\n{}", agent.log()))?;
    print_loaded(&loaded, sb.pin_root(), Some(sb.netns()));
    println!("agent log: {}", agent.log_path().display());
    hold(args.seconds, || {
        agent.is_running().then_some(()).context("the agent exited")
    })?;
    agent.stop()?;
    println!("agent stopped and torn down; removing the sandbox");
    Ok(loaded)
}

fn on_node(args: &LoadArgs, agent_args: &[String]) -> Result<Loaded> {
    let cgroup = args
        .cgroup
        .clone()
        .context("give --cgroup DIR (a child cgroup whose processes are balanced), or --sandbox")?;
    check_target(&cgroup, agent_args, args.on_this_node)?;
    let pin_root = args
        .pin_root
        .clone()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/l4lb"));
    let bin = if args.release {
        crate::util::target_dir().join("release/l4lb-agent")
    } else {
        agent_bin()
    };
    let mut cmd = Command::new(&bin);
    cmd.arg("run")
        .arg("--cgroup")
        .arg(&cgroup)
        .arg("--pin-root")
        .arg(&pin_root)
        .args(agent_args);
    if !args.on_this_node {
        cmd.env("L4LB_FORBID_ROOT_CGROUP", "1")
            .env("L4LB_FORBID_HOST_NETNS", "1");
    }
    println!("+ {cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let result = attach_and_hold(&mut child, &cgroup, &pin_root, args.seconds);
    stop(&mut child);
    result
}

fn attach_and_hold(
    child: &mut Child,
    cgroup: &Path,
    pin_root: &Path,
    seconds: Option<u64>,
) -> Result<Loaded> {
    let mut alive = || match child.try_wait()? {
        None => Ok(()),
        Some(status) => bail!("the agent exited ({status})"),
    };
    let loaded = wait_attached(cgroup, pin_root, &mut alive)?;
    print_loaded(&loaded, pin_root, None);
    hold(seconds, alive)?;
    Ok(loaded)
}

/// SIGTERM (the agent leaves its pinned datapath serving), then wait.
fn stop(child: &mut Child) {
    // SAFETY: signalling the child this process spawned, by its pid.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
}

/// Refuses the root cgroup and XDP/tc on this node's interfaces unless the
/// operator said `--on-this-node`.
pub fn check_target(cgroup: &Path, agent_args: &[String], on_this_node: bool) -> Result<()> {
    if on_this_node {
        return Ok(());
    }
    let root = l4lb_tests::cgroup2_root()?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(cgroup, &root) {
        bail!(
            "{} is the root cgroup: every process on this node would be balanced; \
             give a child cgroup, --sandbox, or --on-this-node if that is what you want",
            cgroup.display()
        );
    }
    if let Some(flag) = agent_args
        .iter()
        .find(|a| a.starts_with("--xdp-iface") || a.starts_with("--xdp-reply-iface"))
    {
        bail!(
            "{flag} attaches XDP/tc to an interface of this node: use --sandbox, \
             or --on-this-node if that is what you want"
        );
    }
    Ok(())
}

/// Polls until the cgroup has every program of the agent and the pin root
/// their links.
fn wait_attached(
    cgroup: &Path,
    pin_root: &Path,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Loaded> {
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    loop {
        alive()?;
        interrupt::check()?;
        let loaded = inspect(cgroup, pin_root)?;
        // Every cgroup program, each with its pinned link: attached.
        let all = l4lb_agent::datapath::SOCK_PROGRAMS.len();
        if loaded.programs.len() >= all && loaded.links.len() >= all {
            return Ok(loaded);
        }
        if Instant::now() >= deadline {
            bail!(
                "nothing attached to {} after {ATTACH_TIMEOUT:?}",
                cgroup.display()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn inspect(cgroup: &Path, pin_root: &Path) -> Result<Loaded> {
    let out = Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(cgroup)
        .output()
        .context("running bpftool (cargo xtask setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let programs = if text.trim().is_empty() {
        Vec::new()
    } else {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("bpftool cgroup show printed {text:?}"))?;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(format!(
                    "{} ({})",
                    p["name"].as_str()?,
                    p["attach_type"].as_str().unwrap_or("?")
                ))
            })
            .collect()
    };
    Ok(Loaded {
        cgroup: cgroup.to_owned(),
        programs,
        maps: pins(pin_root, |n| n.starts_with("L4LB_")),
        links: pins(&pin_root.join("links"), |_| true),
    })
}

/// File names under `dir` that `keep` accepts, sorted.
fn pins(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| keep(n))
        .collect();
    names.sort();
    names
}

fn print_loaded(l: &Loaded, pin_root: &Path, netns: Option<&str>) {
    let cgroup = &l.cgroup;
    println!("\nattached to cgroup {}:", cgroup.display());
    for p in &l.programs {
        println!("  program {p}");
    }
    println!("pinned under {}:", pin_root.display());
    println!("  maps  {}", l.maps.join(" "));
    println!("  links {}", l.links.join(" "));
    let enter = netns.map_or_else(String::new, |n| format!("nsenter --net=/run/netns/{n} "));
    println!("\ninspect with:");
    println!("  bpftool cgroup show {}", cgroup.display());
    println!(
        "  bpftool map dump pinned {}/L4LB_SERVICES",
        pin_root.display()
    );
    println!("  bpftool link show");
    println!(
        "  {enter}{} vips --pin-root {}",
        agent_bin().display(),
        pin_root.display()
    );
}

/// Waits for `seconds` (or until Ctrl-C), checking the agent still runs.
fn hold(seconds: Option<u64>, mut alive: impl FnMut() -> Result<()>) -> Result<()> {
    match seconds {
        Some(s) => println!("\nrunning for {s} s (Ctrl-C stops earlier)"),
        None => println!("\nrunning until Ctrl-C"),
    }
    let until = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    loop {
        if until.is_some_and(|u| Instant::now() >= u) {
            return Ok(());
        }
        if interrupt::check().is_err() {
            println!("interrupted: stopping");
            return Ok(());
        }
        alive()?;
        thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_cgroup_and_host_interfaces_need_on_this_node() {
        let root = l4lb_tests::cgroup2_root().unwrap();
        let e = check_target(&root, &[], false).unwrap_err().to_string();
        assert!(
            e.contains("root cgroup") && e.contains("--on-this-node"),
            "{e}"
        );
        assert!(check_target(&root, &[], true).is_ok());
        let child = root.join("l4lb-some-child");
        assert!(check_target(&child, &[], false).is_ok());
        let xdp = ["--xdp-iface".to_owned(), "eth0".to_owned()];
        let e = check_target(&child, &xdp, false).unwrap_err().to_string();
        assert!(e.contains("--xdp-iface") && e.contains("--sandbox"), "{e}");
    }

    /// End to end in a sandbox: the agent built by the workspace build
    /// attaches its programs to the sandbox's child cgroup and pins its
    /// maps and links; everything is gone after.
    #[test]
    fn sandbox_loads_attaches_and_cleans_up() {
        l4lb_tests::require_root();
        let loaded = run(LoadArgs {
            sandbox: true,
            no_build: true,
            seconds: Some(1),
            ..Default::default()
        })
        .unwrap();
        let names: Vec<&str> = loaded
            .programs
            .iter()
            .filter_map(|p| p.split(' ').next())
            .collect();
        for p in [
            "l4lb_connect4",
            "l4lb_connect6",
            "l4lb_sendmsg4",
            "l4lb_sockops",
        ] {
            assert!(names.contains(&p), "{p} not attached: {loaded:?}");
        }
        assert!(
            loaded.maps.iter().any(|m| m == "L4LB_SERVICES"),
            "{loaded:?}"
        );
        assert!(!loaded.links.is_empty(), "{loaded:?}");
        assert!(!loaded.cgroup.exists(), "sandbox cgroup left: {loaded:?}");
    }
}
