//! A bounded stream of paced connects from inside a node's cgroup
//! (`l4lb-probe stream`), running in the background while the test breaks
//! things; [`Stream::finish`] collects its connections for a [`Curve`].
//!
//! [`Curve`]: super::Curve
use std::{
    io::Read,
    net::SocketAddr,
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};

use super::{Conn, Node, parse_stream};
use crate::bins::probe_bin;

/// How a stream is paced and bounded.
#[derive(Clone, Copy, Debug)]
pub struct StreamSpec {
    /// Connections in all.
    pub count: u64,
    /// One connection starts every this many ms.
    pub interval_ms: u64,
    /// A connection that has not greeted after this long failed.
    pub timeout_ms: u64,
}

impl StreamSpec {
    /// Enough connections to last `run`.
    pub fn lasting(run: Duration, interval_ms: u64, timeout_ms: u64) -> StreamSpec {
        let interval_ms = interval_ms.max(1);
        StreamSpec {
            count: (run.as_millis() as u64 / interval_ms).max(1),
            interval_ms,
            timeout_ms,
        }
    }

    /// The longest the probe can run: the schedule, the last connection's
    /// two bounded steps (connect, greeting), and a margin for a busy box.
    pub fn bound(&self) -> Duration {
        Duration::from_millis(self.count * self.interval_ms + 2 * self.timeout_ms)
            + Duration::from_secs(15)
    }
}

/// A running `l4lb-probe stream`; killed (by its handle) on drop.
pub struct Stream {
    child: Child,
    out: mpsc::Receiver<std::io::Result<String>>,
    spec: StreamSpec,
}

impl Node {
    /// Starts `l4lb-probe stream --to TO` in this node's netns and cgroup,
    /// so its connects go through the node's agent.
    pub fn stream(&self, to: SocketAddr, spec: StreamSpec) -> Result<Stream> {
        let mut cmd = self.sb.in_cgroup(probe_bin());
        cmd.arg("stream")
            .arg("--to")
            .arg(to.to_string())
            .args(["-n", &spec.count.to_string()])
            .args(["--interval-ms", &spec.interval_ms.to_string()])
            .args(["--timeout-ms", &spec.timeout_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let mut stdout = child.stdout.take().context("probe stdout")?;
        let (tx, out) = mpsc::channel();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = tx.send(stdout.read_to_string(&mut s).map(|_| s));
        });
        Ok(Stream { child, out, spec })
    }
}

impl Stream {
    /// Waits (bounded by the spec) for the probe and returns its connections.
    pub fn finish(mut self) -> Result<Vec<Conn>> {
        let text = self
            .out
            .recv_timeout(self.spec.bound())
            .map_err(|_| anyhow!("probe stream still running after {:?}", self.spec.bound()))?
            .context("reading the probe's output")?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("probe stream exited {status}: {text}");
        }
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("probe printed {text:?}"))?;
        parse_stream(&v)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
