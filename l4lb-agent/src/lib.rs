//! l4lb-agent: keeps the VIP → backends table in the l4lb BPF maps.
//!
//! Data flows one way: source (static file, Marathon) → model (`DesiredState`)
//! → plan (diff against what the maps hold) → datapath (map writes). Only
//! `datapath` touches aya. See ARCHITECTURE.md.
pub mod adopt;
pub mod cli;
pub mod codec;
pub mod config;
pub mod datapath;
pub mod dns;
pub mod guard;
pub mod hosts;
pub mod marathon;
pub mod metrics;
pub mod model;
pub mod naming;
pub mod node;
pub mod packet;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod slots;
pub mod sockdestroy;
pub mod source;
pub mod table;
pub mod verify;
