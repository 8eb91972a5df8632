//! Marathon source: full sync + event stream → catalogs. The JSON, the
//! catalog and the read guards are `l4lb_core::marathon` (re-exported here);
//! this module does the HTTP (`client`), the flags (`args`) and the loop
//! (`source`).
pub use l4lb_core::marathon::{
    apps, body, decode, events, origin, parse, pod_part, pods, split, sse_limit,
};

pub mod args;
pub mod client;
pub mod source;
