//! Drives one `l4lb-agent run` inside a sandbox: config file, log file,
//! readiness via `l4lb-agent vips --json`, reload, stop + teardown.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    bins::agent_bin,
    sandbox::{Children, Sandbox, lock},
    sys,
};

pub struct Agent {
    pid: u32,
    children: Children,
    netns: PathBuf,
    config: PathBuf,
    log: PathBuf,
    pin_root: PathBuf,
    stopped: bool,
}

/// The agent's log line once its hooks are attached. The maps are written
/// while the programs are still verified: a VIP they list serves from here.
const HOOKED: &str = "socket hooks attached";

impl Agent {
    pub fn start(sb: &mut Sandbox, config_yaml: &str) -> Result<Agent> {
        Self::start_with_args(sb, config_yaml, &[])
    }

    /// `l4lb-agent run --config F --cgroup <sb cgroup> --pin-root <sb pin root> EXTRA…`
    /// inside the netns but not the cgroup (its own sockets must not be
    /// rewritten), RUST_LOG=debug, stdout+stderr to `<workdir>/agent-N.log`.
    /// An empty `config_yaml` passes no `--config` (for `--marathon` in EXTRA).
    pub fn start_with_args(
        sb: &mut Sandbox,
        config_yaml: &str,
        extra_args: &[&str],
    ) -> Result<Agent> {
        Self::spawn_agent(sb, config_yaml, extra_args, false)
    }

    /// [`Agent::start_with_args`], but the agent runs inside the hooked
    /// cgroup, as it does in production with the default `--cgroup` (the root).
    pub fn start_hooked(sb: &mut Sandbox, config_yaml: &str, extra_args: &[&str]) -> Result<Agent> {
        Self::spawn_agent(sb, config_yaml, extra_args, true)
    }

    fn spawn_agent(
        sb: &mut Sandbox,
        config_yaml: &str,
        extra_args: &[&str],
        hooked: bool,
    ) -> Result<Agent> {
        sys::ensure_bpffs()?;
        let bin = agent_bin();
        if !bin.is_file() {
            bail!(
                "agent binary {} not found (build l4lb-agent or set L4LB_AGENT_BIN)",
                bin.display()
            );
        }
        sb.agents_started += 1;
        let n = sb.agents_started;
        let config = sb.workdir().join(format!("agent-{n}.yaml"));
        let log = sb.workdir().join(format!("agent-{n}.log"));
        fs::write(&config, config_yaml).with_context(|| format!("writing {}", config.display()))?;
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;

        let mut cmd = if hooked {
            sb.in_cgroup(&bin)
        } else {
            sb.in_netns(&bin)
        };
        cmd.arg("run");
        if !config_yaml.is_empty() {
            cmd.arg("--config").arg(&config);
        }
        cmd.arg("--cgroup")
            .arg(sb.cgroup())
            .arg("--pin-root")
            .arg(sb.pin_root())
            .args(extra_args)
            .env("RUST_LOG", "info,l4lb=debug,l4lb_agent=debug")
            // Belt and braces: the agent refuses the root cgroup when this is set.
            .env("L4LB_FORBID_ROOT_CGROUP", "1")
            // … and XDP/tc anywhere but in a netns made with `ip netns add`.
            .env("L4LB_FORBID_HOST_NETNS", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let pid = sb.spawn(cmd)?;
        Ok(Agent {
            pid,
            children: sb.children.clone(),
            netns: sb.netns_path(),
            config,
            log,
            pin_root: sb.pin_root().to_path_buf(),
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the agent's hooks are attached (the maps it lists serve).
    pub fn hooked(&self) -> bool {
        self.log().contains(HOOKED)
    }

    /// Polls `l4lb-agent vips --json` until it lists at least `n` VIPs.
    pub fn wait_vips(&self, n: usize, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                bail!(
                    "agent exited ({status}) before listing {n} VIPs; log:\n{}",
                    self.log_tail()
                );
            }
            let last = self.vips_json();
            if let Ok(v) = &last
                && vip_count(v) >= n
                && self.log().contains(HOOKED)
            {
                return Ok(v.clone());
            }
            if Instant::now() >= deadline {
                let last = match last {
                    Ok(v) => v.to_string(),
                    Err(e) => format!("{e:#}"),
                };
                bail!(
                    "agent listed < {n} VIPs after {timeout:?}; last: {last}; log:\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `vips --json` until `pred` holds (a reload is asynchronous);
    /// panics with the table and the agent log after `timeout`.
    pub fn wait_table(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.vips_json().unwrap_or(Value::Null);
            if pred(&v) && self.log().contains(HOOKED) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; table: {v}\nlog:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the agent log until it contains `needle`; panics with the log
    /// after `timeout`, naming `what` was awaited.
    pub fn wait_log(&self, needle: &str, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({needle:?} in the agent log):\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `l4lb-agent vips --json --pin-root P`, parsed.
    pub fn vips_json(&self) -> Result<Value> {
        let out = sys::run(self.tool("vips").arg("--json"))?;
        serde_json::from_str(&out).with_context(|| format!("`vips --json` printed {out:?}"))
    }

    /// Replaces the config file atomically (write + rename), so the agent
    /// never reads half a file; a watcher on the directory sees the rename.
    pub fn rewrite_config(&self, yaml: &str) -> Result<()> {
        let tmp = self.config.with_extension("yaml.tmp");
        fs::write(&tmp, yaml).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &self.config)
            .with_context(|| format!("replacing {}", self.config.display()))
    }

    pub fn sighup(&self) {
        if self.exit_status().is_none() {
            sys::signal(self.pid, libc::SIGHUP);
        }
    }

    /// The whole log so far (stdout + stderr).
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// None while running (or no longer tracked because the sandbox is gone).
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut kids = lock(&self.children);
        let child = kids.iter_mut().find(|c| c.id() == self.pid)?;
        child.try_wait().ok().flatten()
    }

    /// Sends `sig`, waits up to `timeout`, SIGKILLs if needed; no teardown,
    /// so pins survive (for restart tests). Returns how the agent exited.
    pub fn kill_no_teardown(&mut self, sig: libc::c_int, timeout: Duration) -> Result<ExitStatus> {
        self.stopped = true;
        let mut kids = lock(&self.children);
        let child = kids
            .iter_mut()
            .find(|c| c.id() == self.pid)
            .ok_or_else(|| anyhow!("agent pid {} is no longer tracked", self.pid))?;
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        sys::signal(self.pid, sig);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            thread::sleep(Duration::from_millis(10));
        }
        child.kill()?;
        let st = child.wait()?;
        bail!("agent ignored signal {sig} for {timeout:?}; SIGKILLed ({st})")
    }

    /// SIGTERM, wait (10 s, then SIGKILL), then `l4lb-agent teardown`.
    /// Errors if the agent had crashed, needed SIGKILL, or teardown failed.
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        let exit = self.kill_no_teardown(libc::SIGTERM, Duration::from_secs(10));
        let teardown = sys::run(&mut self.tool("teardown"));
        use std::os::unix::process::ExitStatusExt;
        match exit {
            Ok(st) if st.success() || st.signal() == Some(libc::SIGTERM) => {}
            Ok(st) => bail!("agent exited uncleanly ({st}); log:\n{}", self.log_tail()),
            Err(e) => return Err(e.context(format!("log:\n{}", self.log_tail()))),
        }
        teardown.map(drop).context("l4lb-agent teardown")
    }

    /// `l4lb-agent SUB --pin-root P`, run inside the netns like the agent.
    fn tool(&self, sub: &str) -> Command {
        let mut cmd = sys::netns_command(&self.netns, agent_bin());
        cmd.arg(sub)
            .arg("--pin-root")
            .arg(&self.pin_root)
            .stdin(Stdio::null());
        cmd
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("l4lb-tests: stopping agent {}: {e:#}", self.pid);
        }
    }
}

/// Accepts `[…]`, `{"vips": […]}` or a map keyed by VIP.
fn vip_count(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.len(),
        Value::Object(o) => match o.get("vips") {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(m)) => m.len(),
            _ => o.len(),
        },
        _ => 0,
    }
}
