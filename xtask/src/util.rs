//! Small process helpers shared by the subcommands.
use std::{
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// The cargo that started us (rustup's), so nested builds use the same toolchain.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio, echoing it first; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    eprintln!("+ {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its output whatever the exit status.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let what = describe(cmd);
    cmd.output()
        .with_context(|| format!("cannot start `{what}`"))
}

/// Runs `cmd` and returns its stdout; fails on a non-zero exit, with stderr.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let what = describe(cmd);
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{what}` failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with piped output, killing it (by its pid) after `timeout`.
/// Returns its output whatever the exit status; Err only if it could not start
/// or timed out.
pub fn output_timeout(cmd: &mut Command, timeout: std::time::Duration) -> Result<Output> {
    use std::{io::Read, process::Stdio, thread, time::Instant};
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{what}` timed out after {timeout:?}; killed");
        }
        thread::sleep(std::time::Duration::from_millis(2));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Time left before `deadline`; fails once it has passed (or on Ctrl-C), so
/// that no new load starts after a benchmark has used up its budget.
pub fn time_left(deadline: std::time::Instant) -> Result<std::time::Duration> {
    crate::interrupt::check()?;
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        bail!("benchmark exceeded its time budget");
    }
    Ok(left)
}

/// [`output_timeout`], then [`success_stdout`].
pub fn stdout_timeout(
    cmd: &mut Command,
    what: &str,
    timeout: std::time::Duration,
) -> Result<String> {
    success_stdout(&output_timeout(cmd, timeout)?, what)
}

/// The stdout of a finished command; fails on a non-zero exit with both
/// outputs (a tool often explains itself on stdout), naming it `what`.
pub fn success_stdout(out: &Output, what: &str) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Cargo's target directory (CARGO_TARGET_DIR or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => workspace_root().join(d),
        None => workspace_root().join("target"),
    }
}
