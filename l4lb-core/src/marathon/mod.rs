//! Marathon, the pure part: its JSON (`apps`, `pods`), decoding into one
//! kept part per app or pod (`decode`), the catalog those parts make
//! (`parse`, `pod_part`), and the guards on what is read (`body` byte caps,
//! `sse_limit` event-stream caps, `events` decoding, `origin` which hosts
//! see credentials). The agent's `marathon` module does the HTTP and the
//! loop around it.
pub mod apps;
pub mod body;
pub mod decode;
pub mod events;
pub mod origin;
pub mod parse;
pub mod pod_part;
pub mod pods;
pub mod split;
pub mod sse_limit;
pub mod zone;

#[cfg(test)]
mod keep_tests;
#[cfg(test)]
mod packed_tests;
