//! Where the desired state comes from: one folder per source, each with a
//! `spawn` that sends [`SourceEvent`]s to the agent's loop (`run.rs`), the
//! only writer of the maps. A source sends complete catalogs; one that fails
//! sends a failure, and the last good table stays. A new source (Mesos, …)
//! goes here, with its pure decoding in `l4lb_core` (`marathon`, `mesos`).
use std::time::Instant;

use crate::model::{Catalog, ServiceMap};

pub mod config_file;
pub mod marathon;
pub mod mesos;
pub mod relay;
pub mod static_file;

/// What a source tells the main loop.
pub enum SourceEvent {
    /// A complete, validated catalog.
    Update {
        catalog: Catalog,
        /// The services as the persistent map the source keeps between
        /// catalogs, when it keeps one: the planner then compares only what
        /// differs from the last. They replace `catalog.services` (which
        /// may be left empty), less the VIPs the guard refuses, once the
        /// table serves. None: the services are `catalog.services`.
        services: Option<ServiceMap>,
        /// What caused it ("initial", "SIGHUP", "file change", an event type, …).
        trigger: String,
        /// When the source event that caused it arrived, for event → maps latency.
        received_at: Option<Instant>,
        /// Items skipped with a warning while building it.
        skipped: usize,
    },
    /// The source could not be read; the maps keep the last good table.
    Failed { trigger: String, reason: String },
}
