//! Mesos source: the operator API stream (or `/master/state` polls) →
//! catalogs. The decoding, the state and the catalog are `l4lb_core::mesos`
//! (re-exported here); this module does the flags (`args`), the HTTP
//! (`client`) and the loop (`source`).
pub use l4lb_core::mesos::*;

pub mod args;
pub mod client;
mod sent;
pub mod source;
pub mod stats;
