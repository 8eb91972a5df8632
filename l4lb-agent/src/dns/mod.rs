//! Embedded authoritative DNS: Mesos-DNS's zone (`mesos`, `--dns-domain`) and dcos-net's
//! `l4lb.thisdcos.directory` / `dcos.thisdcos.directory`, built from the
//! source's [`Catalog`](crate::model::Catalog).
//!
//! - [`names`]: Mesos-DNS / dcos-net task naming (pure).
//! - [`records`]: catalog → [`Zones`] (pure); [`domain`]: `--dns-domain`.
//! - [`ip_sources`]: which address a task name gets (`--dns-ip-sources`).
//! - [`answer`]: one query → one reply (pure, socket-free; fuzzed).
//! - [`server`]: UDP + TCP listeners, forwarding, counters.
//! - [`udp_batch`]: UDP queries and replies a batch per system call.
//! - [`tcp`]: TCP connections: deadlines, caps, closing the longest idle.
//! - [`framing`]: TCP length-prefix framing (pure; fuzzed).
//! - [`rrl`]: UDP response-rate limiting (pure).
//! - [`acl`]: the `--dns-allow` / `--dns-rrl-exempt` address lists.
//! - [`args`]: the `--dns-*` flags.
//!
//! The agent builds new zones on every catalog change and sends them on a
//! `tokio::sync::watch` channel; the server reads the latest `Arc<Zones>` per
//! query, so a swap is atomic and a failing source simply leaves the last
//! records in service (as Mesos-DNS does).
pub mod acl;
pub mod args;
pub mod rrl;
pub mod server;
mod tcp;
mod udp_batch;

#[cfg(test)]
mod hardening_tests;

// The pure part lives in l4lb-core.
pub use args::DnsArgs;
pub use l4lb_core::dns::{
    Reply, ReplyOpts, Ttls, ZoneIndex, ZoneOptions, Zones, answer, build_zones, domain, framing,
    ip_sources, names, records, reply_cache, respond,
};
pub use server::{CountersSnapshot, DnsConfig, DnsCounters, DnsServer, spawn};
