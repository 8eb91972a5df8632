//! Kernel test harness for l4lb: throw-away sandboxes (network namespace +
//! child cgroup + bpffs pin root) and a driver for `l4lb-agent`, shared by the
//! integration tests and by `xtask` (demo, benchmarks).
//!
//! Safety model: everything that connects anywhere runs inside a netns that
//! has only `lo` (plus veths the caller adds), and the agent only ever gets a
//! child cgroup of ours, never the root one.

mod agent;
pub mod bench_cluster;
mod bins;
pub mod cluster;
mod dns;
pub mod fake_marathon;
pub mod fake_mesos;
pub mod marathon;
pub mod mesos;
mod probe;
mod redis;
mod sandbox;
mod sys;
pub mod table;
pub mod topology;
pub mod wait;

pub use agent::Agent;
pub use bins::{agent_bin, fake_dns_bin, probe_bin, testsrv_bin};
pub use cluster::{Cluster, ClusterSpec, VipSpec};
pub use dns::AGENT_DNS;
pub use marathon::{
    FakeMarathon, Fault, PodInstanceSpec, TaskSpec, fake_marathon_bin, pod_status, redis_app,
};
pub use probe::{Hold, counts};
pub use sandbox::{Sandbox, TestSrv};
pub use sys::{cgroup2_root, ensure_bpffs, require_root, run};
pub use topology::Topology;
