//! Small host facts and syscalls the harness needs: where cgroup v2 and bpffs
//! are, whether BPF works, and the async-signal-safe bits run between fork and
//! exec.
use std::{
    ffi::{CStr, CString, OsStr},
    fs, io,
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

pub const BPFFS: &str = "/sys/fs/bpf";

/// Mount point of the cgroup v2 hierarchy (`/sys/fs/cgroup` on a unified
/// host, `/sys/fs/cgroup/unified` on a hybrid one). Env `L4LB_CGROUP2` overrides.
pub fn cgroup2_root() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("L4LB_CGROUP2").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })
        // The shortest target is the host's own mount, not a bind below it.
        .min_by_key(|p| p.as_os_str().len())
        .context("no cgroup2 filesystem mounted")
}

fn is_bpffs(path: &str) -> bool {
    fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.nth(1) == Some(path) && f.next() == Some("bpf")
            })
        })
        .unwrap_or(false)
}

/// Mounts bpffs at /sys/fs/bpf unless it already is.
pub fn ensure_bpffs() -> Result<()> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    // 0700, as `xtask setup` and the shipped unit mount it.
    run(Command::new("mount").args(["-t", "bpf", "-o", "mode=0700", "bpf", BPFFS]))
        .with_context(|| format!("mounting bpffs at {BPFFS}"))?;
    Ok(())
}

/// Kernel tests need root and a working bpf(2); without them they must fail
/// loudly, never pass by skipping.
pub fn require_root() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("l4lb kernel tests must run as root (netns, cgroups, BPF); refusing to skip");
    }
    if let Err(e) = cgroup2_root() {
        panic!("l4lb kernel tests need cgroup v2: {e:#}");
    }
    if let Err(e) = ensure_bpffs() {
        panic!("l4lb kernel tests need bpffs at {BPFFS}: {e:#}");
    }
    if let Err(e) = bpf_works() {
        panic!("l4lb kernel tests need a working bpf(2) syscall: {e}");
    }
}

/// Creates and closes a one-entry array map: the cheapest proof that bpf(2)
/// is allowed here.
fn bpf_works() -> io::Result<()> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    // bpf_attr for MAP_CREATE: map_type, key_size, value_size, max_entries, rest zero.
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 4, 1]);
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_mut_ptr(),
            size_of_val(&attr),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Runs a command to completion; error (with its stderr) unless it succeeded.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn signal(pid: u32, sig: libc::c_int) {
    if pid > 0 {
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

/// A command that setns(2)s into the netns at `ns` between fork and exec.
pub fn netns_command(ns: &Path, program: impl AsRef<OsStr>) -> Command {
    let ns = cstring(ns);
    let mut cmd = Command::new(program);
    unsafe { cmd.pre_exec(move || enter_netns(&ns)) };
    cmd
}

pub fn cstring(p: &Path) -> CString {
    // Our paths come from a validated tag; were a NUL there, open(2) of "" fails cleanly.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

// ---- between fork and exec: no allocation, no locks, raw syscalls only ----

/// setns(2) into the netns bound at `path` (e.g. /run/netns/NAME).
pub fn enter_netns(path: &CStr) -> io::Result<()> {
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    let err = io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if rc != 0 { Err(err) } else { Ok(()) }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs`
/// ("0" means "the writer" in cgroup v2).
pub fn enter_cgroup(procs: &CStr) -> io::Result<()> {
    let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    let err = io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if n != 1 { Err(err) } else { Ok(()) }
}
