//! The socket-free DNS modules, from l4lb-core.
pub use l4lb_core::dns::{ZoneIndex, answer, framing, ip_sources, names, records, reply_cache};
