//! l4lb-agent: keeps the VIP → backends table in the l4lb BPF maps.
//!
//! Data flows one way: source (static file, Marathon) → model (`DesiredState`)
//! → plan (diff against what the maps hold) → datapath (map writes). Only
//! `datapath` touches aya. See ARCHITECTURE.md.
//!
//! The pure logic lives in `l4lb-core`; its modules are re-exported here
//! under their usual paths (`crate::model`, `crate::plan`, …).
pub use l4lb_core::{codec, config, guard, model, naming, packet, plan, slots};
pub mod adopt;
pub mod allocator;
pub mod cli;
pub mod datapath;
pub mod dns;
pub mod health_probe;
pub mod hosts;
pub mod http_api;
pub mod lb_explain;
pub mod locality;
pub mod marathon;
pub mod mesos;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod reconcile;
pub mod run;
pub mod sockdestroy;
pub mod source;
pub mod table;
pub mod verify;
