//! The agent's socket-free DNS modules (not `server`/`args`/`tcp`: tokio, clap).
#[path = "../../l4lb-agent/src/dns/answer.rs"]
pub mod answer;
#[path = "../../l4lb-agent/src/dns/ip_sources.rs"]
pub mod ip_sources;
#[path = "../../l4lb-agent/src/dns/names.rs"]
pub mod names;
#[path = "../../l4lb-agent/src/dns/records.rs"]
pub mod records;
#[path = "../../l4lb-agent/src/dns/framing.rs"]
pub mod framing;
