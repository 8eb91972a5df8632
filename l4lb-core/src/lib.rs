//! l4lb-core: the pure logic of l4lb, with no I/O, no async runtime and no
//! kernel (no aya, tokio, reqwest or libc), so it builds and tests with a
//! plain toolchain: the data model and the VIP file, dcos-net's VIP names and
//! addresses, the plan (what the maps must hold → ordered writes), Maglev
//! slots, the map codec, the DNS zones and answers, the guard's rules, and
//! the table of agent host names, Marathon's JSON and the catalog it makes.
//! `l4lb-agent` does all the I/O around it.
pub mod codec;
pub mod config;
pub mod declare;
pub mod dns;
pub mod guard;
pub mod hosts;
pub mod intern;
pub mod locality;
pub mod marathon;
pub mod mesos;
pub mod model;
pub mod naming;
pub mod packet;
pub mod plan;
pub mod slots;
