//! The programs' verification and attach, on a blocking thread while the
//! loop reads the source and writes the first table into the maps.
//!
//! The maps exist (pinned) before this starts, so the first table can be
//! written before the programs read it; nothing is published as serving
//! (DNS names, VIP routes, readiness) before `ready` returned.
use std::time::Instant;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use tracing::info;

use crate::datapath::{Attached, Programs, xdp::PacketAttach};

pub struct Attaching {
    /// The job returns the instant it attached: `ready` may be awaited
    /// much later (after a read), and serving counts from the attach.
    pending: Option<JoinHandle<Result<(Attached, Instant)>>>,
    /// Kept for the agent's lifetime (the packet links live with it).
    _attached: Option<Attached>,
    at: Option<Instant>,
}

impl Attaching {
    /// Starts verifying and attaching `programs` (socket hooks, then the
    /// packet programs on `packet`'s interfaces).
    pub fn spawn(programs: Programs, packet: PacketAttach, cgroup: String) -> Self {
        let job = move || {
            let mut attached = programs.attach()?;
            attached.attach_packet(&packet)?;
            // Tests wait for this line: from here the maps serve.
            info!(%cgroup, "socket hooks attached");
            Ok((attached, Instant::now()))
        };
        Attaching {
            pending: Some(tokio::task::spawn_blocking(job)),
            _attached: None,
            at: None,
        }
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits for the programs (at most once; cancel-safe); the time they were
    /// attached. An error ends the agent, as a failed load did at start.
    pub async fn ready(&mut self) -> Result<Instant> {
        if let Some(job) = self.pending.as_mut() {
            let done = job.await.context("the program loader panicked");
            self.pending = None;
            let (attached, at) = done??;
            self._attached = Some(attached);
            self.at = Some(at);
        }
        self.at
            .context("the programs failed to load (reported before)")
    }
}
