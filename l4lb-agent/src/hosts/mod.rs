//! Agent hosts given as names: Marathon reports `task.host` as whatever the
//! Mesos agent registered with, and plain Mesos agents register by hostname.
//! dcos-net, marathon-lb and Mesos-DNS all resolve it (IPv4 first); so does
//! l4lb, without ever making an apply wait on DNS:
//! - the catalog is built against a [`HostTable`] snapshot (pure: a name is
//!   resolved, still pending, or failed);
//! - [`resolver`] keeps that table fresh in the background (hickory, the
//!   node's resolv.conf, TTL-driven refresh) and says when it changed, so the
//!   source rebuilds the catalog without reading the control plane again.
pub mod resolver;

pub use l4lb_core::hosts::*;
