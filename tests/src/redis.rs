//! Debian's redis-server and redis-cli in a sandbox: real backends for the
//! kernel tests, started in the netns and ready (PING answered) on return.
use std::{
    io::Write,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::Sandbox;

impl Sandbox {
    /// `redis-server --bind ip --port port` to run inside the netns (not the
    /// cgroup), in the foreground, with nothing persisted. Protected mode is
    /// off: clients in another netns (a [`Topology`](crate::Topology)'s
    /// client) are not local to it, and nothing outside our netns reaches it.
    pub fn redis_server_cmd(&self, ip: &str, port: u16) -> Command {
        let mut cmd = self.in_netns("redis-server");
        cmd.args(["--bind", ip, "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Starts [`Self::redis_server_cmd`] and waits until it answers PING directly.
    pub fn spawn_redis(&mut self, ip: &str, port: u16) -> Result<u32> {
        let cmd = self.redis_server_cmd(ip, port);
        let pid = self.spawn(cmd)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self
            .redis_cli_in_netns(ip, port, &["PING"])
            .contains("PONG")
        {
            if Instant::now() >= deadline {
                bail!("redis-server on {ip}:{port} never answered PING");
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(pid)
    }

    /// `redis-cli -h host -p port ARGS` from inside the netns AND the cgroup
    /// (so a VIP goes through the socket hooks); stdout, empty on failure.
    pub fn redis_cli(&self, host: &str, port: u16, args: &[&str]) -> String {
        run_cli(self.in_cgroup("redis-cli"), host, port, args)
    }

    /// The same from the netns only (direct, never rewritten).
    pub fn redis_cli_in_netns(&self, host: &str, port: u16, args: &[&str]) -> String {
        run_cli(self.in_netns("redis-cli"), host, port, args)
    }

    /// One `redis-cli -h host -p port` session (one connection) from inside
    /// the netns and the cgroup, fed `input` (commands, one a line); stdout.
    pub fn redis_session(&self, host: &str, port: u16, input: &str) -> Result<String> {
        let mut cmd = self.in_cgroup("redis-cli");
        cmd.args(["-h", host, "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        // Dropped after writing: EOF ends the session.
        let mut stdin = child.stdin.take().context("redis-cli stdin")?;
        stdin.write_all(input.as_bytes())?;
        drop(stdin);
        let out = child.wait_with_output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn run_cli(mut cmd: Command, host: &str, port: u16, args: &[&str]) -> String {
    cmd.args(["-h", host, "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null());
    match cmd.output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => String::new(),
    }
}
