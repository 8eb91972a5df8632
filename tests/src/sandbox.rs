//! A throw-away place to run one test: a network namespace with only `lo`, a
//! child cgroup of the cgroup v2 root, a bpffs pin root path and a work dir,
//! plus the processes started in them. Everything goes away on drop.
use std::{
    ffi::OsStr,
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bins::{probe_bin, testsrv_bin},
    sys::{self, BPFFS},
};

/// Children shared between the sandbox (which kills them on drop) and handles
/// such as `Agent` (which wait on their own one).
pub(crate) type Children = Arc<Mutex<Vec<Child>>>;

pub(crate) fn lock(c: &Children) -> MutexGuard<'_, Vec<Child>> {
    // A panicking test must not stop cleanup.
    c.lock().unwrap_or_else(|e| e.into_inner())
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Sandbox {
    name: String,
    cgroup: PathBuf,
    pin_root: PathBuf,
    workdir: PathBuf,
    pub(crate) children: Children,
    pub(crate) agents_started: usize,
    // Drop removes only what this sandbox itself created.
    made_netns: bool,
    made_cgroup: bool,
}

/// A running `l4lb-testsrv` and the addresses it actually bound (useful with port 0).
#[derive(Clone, Debug)]
pub struct TestSrv {
    pub pid: u32,
    pub tcp: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
}

impl Sandbox {
    /// Netns `l4lb-<tag>-<pid>` with lo up, cgroup `<cg2>/l4lb-<tag>-<pid>`,
    /// pin root `/sys/fs/bpf/l4lb-<tag>-<pid>` (path only). A second and later
    /// sandbox in the same process gets `-<n>` appended so parallel tests
    /// never share one.
    pub fn new(tag: &str) -> Result<Sandbox> {
        if tag.is_empty()
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("sandbox tag {tag:?} must be non-empty [A-Za-z0-9_-]");
        }
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut name = format!("l4lb-{tag}-{}", std::process::id());
        if seq > 0 {
            name.push_str(&format!("-{seq}"));
        }
        let cg2 = sys::cgroup2_root()?;
        // Built first so that a failure half way is cleaned up by Drop.
        let mut sb = Sandbox {
            cgroup: cg2.join(&name),
            pin_root: Path::new(BPFFS).join(&name),
            workdir: std::env::temp_dir().join(&name),
            name,
            children: Arc::default(),
            agents_started: 0,
            made_netns: false,
            made_cgroup: false,
        };
        if sb.cgroup == cg2 || !sb.cgroup.starts_with(&cg2) {
            bail!(
                "refusing cgroup {} (must be a child of {})",
                sb.cgroup.display(),
                cg2.display()
            );
        }
        sys::run(Command::new("ip").args(["netns", "add", &sb.name]))?;
        sb.made_netns = true;
        sys::run(Command::new("ip").args(["-n", &sb.name, "link", "set", "lo", "up"]))?;
        fs::create_dir(&sb.cgroup)
            .with_context(|| format!("creating cgroup {}", sb.cgroup.display()))?;
        sb.made_cgroup = true;
        fs::create_dir_all(&sb.workdir)
            .with_context(|| format!("creating {}", sb.workdir.display()))?;
        // Best effort: only the agent needs it, and Agent::start checks again.
        let _ = sys::ensure_bpffs();
        Ok(sb)
    }

    pub fn netns(&self) -> &str {
        &self.name
    }

    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    pub fn pin_root(&self) -> &Path {
        &self.pin_root
    }

    /// Scratch dir for configs and logs (`$TMPDIR/<name>`); removed on drop
    /// unless `L4LB_KEEP_WORKDIR` is set.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// `/run/netns/<name>`, the handle setns(2) takes.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip addr add CIDR dev lo` inside the netns (127.0.0.0/8 is already there).
    pub fn add_addr(&self, cidr: &str) -> Result<()> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.name, "addr", "add", cidr, "dev", "lo"]);
        if cidr.contains(':') {
            cmd.arg("nodad");
        }
        sys::run(&mut cmd)?;
        Ok(())
    }

    /// An interface's MAC address (`ip -j link` in the netns).
    pub fn mac(&self, dev: &str) -> Result<String> {
        let out = sys::run(self.in_netns("ip").args(["-j", "link", "show", dev]))?;
        let v: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("ip -j link printed {out:?}"))?;
        v[0]["address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no address for {dev} in {out}"))
    }

    /// Names of the programs attached to the sandbox cgroup (`bpftool cgroup
    /// show`), sorted; a program attached twice is listed twice.
    pub fn cgroup_programs(&self) -> Result<Vec<String>> {
        let out = sys::run(
            Command::new("bpftool")
                .args(["-j", "cgroup", "show"])
                .arg(&self.cgroup),
        )?;
        let v: serde_json::Value = if out.trim().is_empty() {
            serde_json::Value::Array(vec![])
        } else {
            serde_json::from_str(&out).with_context(|| format!("bpftool printed {out:?}"))?
        };
        let mut names: Vec<String> = v
            .as_array()
            .context("bpftool cgroup show: not an array")?
            .iter()
            .filter_map(|p| p["name"].as_str().map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Frames native XDP dropped on a veth so far (`rx_queue_0_xdp_drops`).
    pub fn xdp_drops(&self, dev: &str) -> Result<u64> {
        let out = sys::run(self.in_netns("ethtool").args(["-S", dev]))?;
        out.lines()
            .find_map(|l| l.trim().strip_prefix("rx_queue_0_xdp_drops:"))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no rx_queue_0_xdp_drops in {out:?}"))
    }

    /// Packets an nft rule counted: `nft list chain <family> <table> <chain>`
    /// in the netns, the first `counter packets N` in it.
    pub fn nft_packets(&self, family: &str, table: &str, chain: &str) -> Result<u64> {
        let out = sys::run(
            self.in_netns("nft")
                .args(["list", "chain", family, table, chain]),
        )?;
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no packet counter in {out:?}"))
    }

    /// GET `path` from the agent's metrics/health listener (127.0.0.1:62080,
    /// its default) with Debian's curl inside the netns: (HTTP code, body).
    pub fn agent_http(&self, path: &str) -> (String, String) {
        let out = self
            .in_netns("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:62080{path}"))
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
        (code.to_string(), body.to_string())
    }

    /// A command that runs inside the netns (not the cgroup): setns(2) between
    /// fork and exec, so /sys, bpffs and cgroupfs stay the host's.
    pub fn in_netns(&self, program: impl AsRef<OsStr>) -> Command {
        sys::netns_command(&self.netns_path(), program)
    }

    /// A command that runs inside the netns AND the child cgroup, so its
    /// sockets are created under the agent's BPF programs. The cgroup is
    /// joined before exec, hence before the program can open any socket.
    pub fn in_cgroup(&self, program: impl AsRef<OsStr>) -> Command {
        let ns = sys::cstring(&self.netns_path());
        let procs = sys::cstring(&self.cgroup.join("cgroup.procs"));
        let mut cmd = Command::new(program);
        unsafe {
            cmd.pre_exec(move || {
                sys::enter_cgroup(&procs)?;
                sys::enter_netns(&ns)
            })
        };
        cmd
    }

    /// Spawns and tracks a process; it is killed (SIGTERM, then SIGKILL) on drop.
    /// SIGHUP is reset to its default first: a test run under `nohup`
    /// ignores it, exec keeps an ignored signal ignored, and a shell (the
    /// fake agent reloads on SIGHUP) cannot trap a signal ignored on entry.
    pub fn spawn(&mut self, mut cmd: Command) -> Result<u32> {
        // SAFETY: signal(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            })
        };
        let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let pid = child.id();
        lock(&self.children).push(child);
        Ok(pid)
    }

    /// The pids of the processes this sandbox tracks (and kills on drop).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.children).iter().map(Child::id).collect()
    }

    /// Stops one tracked process (SIGTERM, then SIGKILL after 3 s) and reaps it.
    pub fn kill(&mut self, pid: u32) -> Result<()> {
        let mut kids = lock(&self.children);
        let Some(i) = kids.iter().position(|c| c.id() == pid) else {
            bail!("pid {pid} is not tracked by sandbox {}", self.name);
        };
        let mut child = kids.swap_remove(i);
        drop(kids);
        terminate(std::slice::from_mut(&mut child), Duration::from_secs(3));
        Ok(())
    }

    /// Starts `l4lb-testsrv --id ID` in the netns (not the cgroup: servers
    /// must not be rewritten) and waits until all its sockets are bound.
    pub fn spawn_testsrv(&mut self, id: &str, tcp: &[&str], udp: &[&str]) -> Result<TestSrv> {
        self.spawn_testsrv_with(id, tcp, udp, &[])
    }

    /// [`Sandbox::spawn_testsrv`] with more flags (e.g. `--accept-delay-ms`).
    pub fn spawn_testsrv_with(
        &mut self,
        id: &str,
        tcp: &[&str],
        udp: &[&str],
        extra: &[&str],
    ) -> Result<TestSrv> {
        let mut cmd = self.in_netns(testsrv_bin());
        cmd.args(["--id", id])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for a in tcp {
            cmd.args(["--tcp", a]);
        }
        for a in udp {
            cmd.args(["--udp", a]);
        }
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let out = child.stdout.take().context("testsrv stdout")?;
        let mut srv = TestSrv {
            pid: child.id(),
            tcp: vec![],
            udp: vec![],
        };
        lock(&self.children).push(child);
        // Read the readiness lines on a thread so a wedged server cannot hang us.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let done = line == "ready";
                if tx.send(line).is_err() || done {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!(
                    "testsrv {id} did not become ready (exited or timed out); see stderr above"
                )
            })?;
            match line.split_once(' ') {
                _ if line == "ready" => return Ok(srv),
                Some(("tcp", a)) => srv.tcp.push(a.parse()?),
                Some(("udp", a)) => srv.udp.push(a.parse()?),
                _ => bail!("unexpected testsrv output {line:?}"),
            }
        }
    }

    /// Runs `l4lb-probe ARGS` inside the netns and cgroup, returns its JSON.
    pub fn probe(&self, args: &[&str]) -> Result<serde_json::Value> {
        let out = sys::run(self.in_cgroup(probe_bin()).args(args).stdin(Stdio::null()))?;
        serde_json::from_str(&out).with_context(|| format!("probe {args:?} printed {out:?}"))
    }

    fn remove_cgroup(&self) {
        remove_cgroup_tree(&self.cgroup, Instant::now() + Duration::from_secs(5));
    }
}

/// Removes `cg` and every cgroup a test made below it (children first: a
/// cgroup with children cannot be removed), ending the processes left in
/// them. Everything below our private cgroup is ours.
fn remove_cgroup_tree(cg: &Path, deadline: Instant) {
    if let Ok(entries) = fs::read_dir(cg) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path(), deadline);
            }
        }
    }
    loop {
        match fs::remove_dir(cg) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("l4lb-tests: leaving cgroup {}: {e}", cg.display());
                return;
            }
            Err(_) => {}
        }
        // Only processes we put there (or their children) can be in our
        // private cgroup; end them one by one, by pid.
        if let Ok(procs) = fs::read_to_string(cg.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                sys::signal(pid, libc::SIGKILL);
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let mut kids = std::mem::take(&mut *lock(&self.children));
        terminate(&mut kids, Duration::from_secs(3));
        if self.made_cgroup {
            self.remove_cgroup();
        }
        if self.made_netns {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if self.pin_root.exists()
            && let Err(e) = fs::remove_dir_all(&self.pin_root)
        {
            eprintln!(
                "l4lb-tests: leaving pin root {}: {e}",
                self.pin_root.display()
            );
        }
        if std::env::var_os("L4LB_KEEP_WORKDIR").is_none() {
            let _ = fs::remove_dir_all(&self.workdir);
        }
    }
}

/// SIGTERM to every live child, wait up to `grace`, SIGKILL the rest, reap all.
pub(crate) fn terminate(kids: &mut [Child], grace: Duration) {
    for c in kids.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            sys::signal(c.id(), libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && kids.iter_mut().any(|c| matches!(c.try_wait(), Ok(None))) {
        thread::sleep(Duration::from_millis(10));
    }
    for c in kids.iter_mut() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}
