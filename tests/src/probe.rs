//! `l4lb-probe` runs from inside a sandbox (netns + cgroup, like
//! [`Sandbox::probe`]): one-shot TCP and UDP runs, their per-backend counts,
//! and a TCP connection held open across changes.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, ExitStatus, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{Sandbox, bins::probe_bin};

impl Sandbox {
    /// `l4lb-probe tcp --to TO -n N`, its JSON.
    pub fn probe_tcp(&self, to: &str, n: u32) -> Result<Value> {
        self.probe(&["tcp", "--to", to, "-n", &n.to_string()])
    }

    /// The backends (ids) that answered TCP connects through `to`, in up to
    /// 4 rounds of `per_round` connects a second apart, stopping once every
    /// one of `ids` answered or another did; an error if a connect failed. For tests that ask whether each
    /// backend is reachable, not how connects spread: p2c may prefer one
    /// backend for a moment (its averages hold this node's noise) and tries
    /// the others again within seconds.
    pub fn reach_each(&self, to: &str, ids: &[&str], per_round: u32) -> Result<BTreeSet<String>> {
        let mut reached = BTreeSet::new();
        for round in 0..4 {
            if round > 0 {
                thread::sleep(Duration::from_secs(1));
            }
            let v = self.probe_tcp(to, per_round)?;
            if v["errors"] != 0 {
                bail!("connects through {to} failed: {v}");
            }
            reached.extend(counts(&v).into_keys());
            let stray = reached.iter().any(|r| !ids.contains(&r.as_str()));
            if stray || reached.len() == ids.len() {
                break;
            }
        }
        Ok(reached)
    }

    /// `l4lb-probe udp --to TO -n N EXTRA…` (e.g. `--mode connected`), its JSON.
    pub fn probe_udp(&self, to: &str, n: u32, extra: &[&str]) -> Result<Value> {
        let n = n.to_string();
        self.probe(&[&["udp", "--to", to, "-n", &n][..], extra].concat())
    }

    /// `l4lb-probe hold --to TO` in the netns and cgroup: one TCP connection,
    /// open once this returns, to the backend named in [`Hold::backend`].
    pub fn hold(&self, to: &str) -> Result<Hold> {
        let mut cmd = self.in_cgroup(probe_bin());
        cmd.args(["hold", "--to", to])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let mut hold = Hold {
            child,
            stdin,
            stdout,
            backend: String::new(),
        };
        hold.backend = hold
            .read_line()
            .context("the held connection's backend id")?;
        Ok(hold)
    }
}

/// Per-backend counts (`"counts": {id: n}`) of an `l4lb-probe` run.
pub fn counts(probe: &Value) -> BTreeMap<String, u64> {
    probe["counts"]
        .as_object()
        .unwrap_or_else(|| panic!("no counts in {probe}"))
        .iter()
        .map(|(id, n)| (id.clone(), n.as_u64().unwrap()))
        .collect()
}

/// A connection held by `l4lb-probe hold`; its process is killed on drop.
pub struct Hold {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    /// The id of the testsrv the connection reached.
    pub backend: String,
}

impl Hold {
    /// Sends `line` over the connection; the backend's echo, trimmed.
    pub fn echo(&mut self, line: &str) -> Result<String> {
        let stdin = self.stdin.as_mut().context("the hold was finished")?;
        writeln!(stdin, "{line}").context("writing to l4lb-probe hold")?;
        stdin.flush()?;
        self.read_line()
            .with_context(|| format!("the echo of {line:?}"))
    }

    /// Closes the connection (EOF on the probe's stdin) and waits for the probe.
    pub fn finish(mut self) -> Result<ExitStatus> {
        self.stdin = None;
        Ok(self.child.wait()?)
    }

    fn read_line(&mut self) -> Result<String> {
        let stdout = self.stdout.as_mut().context("no stdout")?;
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            bail!("l4lb-probe hold closed its output");
        }
        Ok(line.trim().to_string())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Our own child, by its handle.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
