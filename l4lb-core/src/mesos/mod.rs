//! Mesos, the pure part: what the `--mesos` source reads, decoded into the
//! task view dcos-net's `dcos_net_mesos_listener` builds (and Mesos-DNS's
//! extra inputs). No I/O: the agent does the HTTP and feeds these.
//!
//! - `recordio`: the operator API's framing (`<length>\n<bytes>`), decoded
//!   incrementally from body chunks, with caps.
//! - `api`: the operator API v1 JSON (SUBSCRIBED, TASK_*, AGENT_*,
//!   FRAMEWORK_*, HEARTBEAT, GET_STATE): typed, lenient ([`lenient`]: a bad
//!   task, agent or framework is skipped, not the message).
//! - `master_state`: `GET /master/state`, the fallback read (Mesos-DNS's),
//!   turned into the same tasks.
//! - `task`: the task view and dcos-net's per-field derivation; `ports`:
//!   its port sources and merges.
//! - `state`: [`MesosState`], the stream's state machine (tasks held until
//!   their agent and framework are known, dropped when terminal), and
//!   [`from_state`], one `GET_STATE` answer read alone.
//! - `cluster`: the leader, masters, agents and frameworks as reported
//!   ([`ClusterFacts`]), resolved into the model's `Cluster` for
//!   Mesos-DNS's cluster records.
//! - `parts`: [`TaskParts`], each visible task's part of the catalog, kept
//!   between catalogs (a change redoes only what it touched), and the last
//!   tasks of agents a newly elected master lists as recovered, carried
//!   until they re-register.
//! - `warning`: what was skipped, naming it, with a counter kind.
//! - `catalog`: task views → [`Catalog`](crate::model::Catalog) (VIPs and
//!   task records), through the Marathon catalog's builder.
//!
//! The source loop: `POST /api/v1 {"type":"SUBSCRIBE"}`, body chunks →
//! [`RecordIoDecoder::feed`] → [`decode_message`] → [`MesosState::apply`]
//! (with the current host table); when [`Applied::changed`], rebuild the
//! catalog from [`MesosState::tasks`]; resolve [`MesosState::wanted_hosts`]
//! and call [`MesosState::refresh_hosts`] when answers change; no message
//! for 3 × [`MesosState::heartbeat_interval`] means a dead stream. A decode
//! error (framing or message) ends the stream: reconnect, and keep the last
//! catalog until a new SUBSCRIBED arrives. Fallback: `GET /master/state` →
//! [`from_master_state`] → a [`Snapshot`], used only when the read was whole.
pub mod api;
pub mod catalog;
pub mod cluster;
pub mod fault_domain;
pub mod lenient;
pub mod master_state;
pub mod parts;
pub mod ports;
pub mod recordio;
pub mod state;
pub mod task;
pub mod warning;

#[cfg(test)]
mod cluster_peer_tests;
#[cfg(test)]
mod peer_tests;

pub use api::{Message, MessageError, decode_message};
pub use cluster::{ClusterFacts, HostPort};
pub use master_state::{MasterState, from_master_state};
pub use parts::TaskParts;
pub use ports::Protocol;
pub use recordio::{RecordIoDecoder, RecordIoError};
pub use state::{Applied, Changes, KnownAgent, MesosState, Snapshot, from_state};
pub use task::{Runtime, TaskKey, TaskPort, TaskState, TaskView};
pub use warning::{Warning, WarningKind};
