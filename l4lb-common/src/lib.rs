//! Types shared by the kernel programs (`l4lb-ebpf`) and the agent.
//!
//! Every struct here is a BPF map key or value: `#[repr(C)]`, explicit padding,
//! no pointers. Addresses and ports are kept in network byte order exactly as
//! the kernel hands them to the programs, so the hot path never swaps bytes.
//! IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`) so one map serves
//! both families and a dual-stack socket's `connect6(::ffff:VIP)` finds the
//! IPv4 service without a second lookup path.
#![cfg_attr(not(test), no_std)]

pub mod fast_path;
pub mod flow_slots;
pub mod health;
pub mod locality;
pub mod maps;
pub mod monitor;
pub mod probe;
pub mod service_stats;
pub mod tcp_close;
pub mod types;

pub use fast_path::*;
pub use flow_slots::*;
pub use health::*;
pub use locality::*;
pub use maps::*;
pub use monitor::*;
pub use probe::*;
pub use service_stats::*;
pub use tcp_close::*;
pub use types::*;
