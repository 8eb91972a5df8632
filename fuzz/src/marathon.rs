//! Marathon's JSON, catalog and read guards, from l4lb-core.
pub use l4lb_core::marathon::{
    apps, body, decode, events, origin, parse, pod_part, pods, sse_limit,
};
