//! DNS, the pure part: Mesos-DNS / dcos-net names ([`names`]), catalog →
//! zones ([`records`], with Mesos-DNS's cluster records from [`cluster`]), which address a task name gets ([`ip_sources`]), one
//! query → one reply ([`answer`]; [`reply_cache`] remembers replies per question), TCP length-prefix framing ([`framing`]),
//! zone transfer ([`axfr`]), the discovery HTTP API's documents ([`http_api`]),
//! zones updated by what changed ([`zone_index`]).
//! The agent's `dns` module serves them.
pub mod answer;
pub mod axfr;
pub mod cluster;
pub mod domain;
pub mod framing;
pub mod http_api;
pub mod ip_sources;
pub mod names;
pub mod records;
pub mod reply_cache;
pub mod sample;
mod wire_name;
pub mod zone_index;
mod zone_node;

pub use answer::{Reply, ReplyOpts, answer, respond};
pub use records::{Ttls, ZoneOptions, Zones, build_zones};
pub use zone_index::ZoneIndex;
