//! The programs' verification and attach, on a blocking thread while the
//! loop reads the source and writes the first table into the maps.
//!
//! The maps exist (pinned) before this starts, so the first table can be
//! written before the programs read it; nothing is published as serving
//! (DNS names, VIP routes, readiness) before `ready` returned. With no
//! packet interface to attach (no `--xdp-iface`, no `--xdp-reply-iface`),
//! the socket hooks are all that serve: `ready` returns once they are
//! attached, and the packet programs (loaded and pinned for `explain` and
//! a later attach) are verified after, on a thread of their own at the
//! lowest priority until the table serves (`low_priority.rs`).
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::{sync::oneshot, task::JoinHandle};
use tracing::info;

use super::low_priority::LowPriority;
use crate::datapath::{Attached, Programs, SocketAttached, xdp::PacketAttach};

/// The longest the packet programs' verification yields to the first
/// table, from the start (a full sync of 10,000 apps serves in < 1 s).
const MAX_YIELD: Duration = Duration::from_secs(3);

pub struct Attaching {
    /// The job returns the instant it attached: `ready` may be awaited
    /// much later (after a read), and serving counts from the attach.
    pending: Option<JoinHandle<Result<(Attached, Instant)>>>,
    /// The socket hooks' attach instant, when it is the serving one (no
    /// packet interface waits for the packet programs).
    early: Option<oneshot::Receiver<Instant>>,
    /// Kept for the agent's lifetime (the packet links live with it).
    _attached: Option<Attached>,
    at: Option<Instant>,
    /// The packet programs' loader, released once the table serves.
    packet_load: LowPriority,
}

impl Attaching {
    /// Starts verifying and attaching `programs` (socket hooks, then the
    /// packet programs on `packet`'s interfaces).
    pub fn spawn(programs: Programs, packet: PacketAttach, cgroup: String) -> Self {
        let serves_without_packet = packet.xdp_ifaces.is_empty() && packet.reply_ifaces.is_empty();
        let (tx, rx) = oneshot::channel();
        let packet_load = LowPriority::default();
        let low = serves_without_packet.then(|| packet_load.clone());
        let job = move || {
            let socket = programs.attach_socket()?;
            if serves_without_packet {
                info!("the socket hooks serve; the packet programs load next");
                let _ = tx.send(Instant::now());
            }
            let mut attached = load_packet(socket, low)?;
            attached.attach_packet(&packet)?;
            // Tests wait for this line: from here every program is in place.
            info!(%cgroup, "socket hooks attached");
            Ok((attached, Instant::now()))
        };
        if serves_without_packet {
            let release = packet_load.clone();
            tokio::spawn(async move {
                tokio::time::sleep(MAX_YIELD).await;
                release.release();
            });
        }
        Attaching {
            pending: Some(tokio::task::spawn_blocking(job)),
            early: serves_without_packet.then_some(rx),
            _attached: None,
            at: None,
            packet_load,
        }
    }

    /// True while the job runs (the serving loop awaits [`Self::finish`]).
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Waits until the programs serve (cancel-safe); the instant they did.
    /// An error ends the agent, as a failed load did at start.
    pub async fn ready(&mut self) -> Result<Instant> {
        if self.at.is_none()
            && let Some(early) = self.early.as_mut()
            && let Ok(at) = early.await
        {
            self.at = Some(at);
        }
        // Gone without a send: the job failed before the socket hooks were
        // attached, and `finish` returns its error.
        self.early = None;
        if self.at.is_none() {
            self.finish().await?;
        }
        let at = self
            .at
            .context("the programs failed to load (reported before)")?;
        // Awaited once the maps hold the table: it serves from here.
        self.packet_load.release();
        Ok(at)
    }

    /// Waits for the whole job (at most once; cancel-safe): a packet
    /// program that fails to load after the socket hooks serve still ends
    /// the agent.
    pub async fn finish(&mut self) -> Result<()> {
        if let Some(job) = self.pending.as_mut() {
            let done = job.await.context("the program loader panicked");
            self.pending = None;
            let (attached, at) = done??;
            self._attached = Some(attached);
            self.at.get_or_insert(at);
        }
        Ok(())
    }
}

/// The packet programs verified and pinned: with `low`, on a thread of
/// their own that yields the CPU until released.
fn load_packet(socket: SocketAttached, low: Option<LowPriority>) -> Result<Attached> {
    let Some(low) = low else {
        return socket.load_packet();
    };
    std::thread::Builder::new()
        .name("l4lb-packet-load".into())
        .spawn(move || {
            low.lower_this_thread();
            socket.load_packet()
        })
        .context("starting the packet programs' loader")?
        .join()
        .map_err(|_| anyhow!("the packet programs' loader panicked"))?
}
