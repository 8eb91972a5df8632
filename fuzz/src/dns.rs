//! The agent's socket-free DNS modules (not `server`/`args`: tokio, clap).
#[path = "../../l4lb-agent/src/dns/answer.rs"]
pub mod answer;
#[path = "../../l4lb-agent/src/dns/names.rs"]
pub mod names;
#[path = "../../l4lb-agent/src/dns/records.rs"]
pub mod records;
