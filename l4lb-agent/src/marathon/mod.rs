//! Marathon source: full sync + event stream → catalogs (see dcos.md facts).
pub mod apps;
pub mod args;
pub mod body;
pub mod client;
pub mod decode;
pub mod events;
pub mod origin;
pub mod parse;
pub mod pod_part;
pub mod pods;
pub mod source;
pub mod sse_limit;
