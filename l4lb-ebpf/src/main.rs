//! l4lb kernel programs (the `l4lb` object the agent loads). One file per hook
//! family (`sock_addr.rs`: cgroup socket hooks; `sock_ops.rs`: handshake
//! observation for per-backend health; `sock_release.rs`: a marked socket's
//! end; `xdp.rs`: XDP ingress; `tc_in.rs`:
//! the same on tc ingress; `tc.rs`: tc reply; both ingress programs balance
//! through `balance.rs`); the service lookup and the backend choice live in `lb.rs` so every
//! datapath picks backends the same way; packet headers and parsing helpers in
//! `net.rs`, checksum helpers in `csum.rs`. The benchmark's programs are a
//! separate object (`bench.rs`), never part of this one.
#![no_std]
#![no_main]
// Atomic add and compare-and-swap on map values (`health.rs`), atomic OR of
// a flow's close bits (`flow_close.rs`): stable `core` offers no
// read-modify-write atomics on bpf.
#![feature(core_intrinsics)]
// BPF inline assembly: word loads of packet bytes (`wide.rs`).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]

mod balance;
mod client;
mod csum;
mod ct;
mod ct4;
mod flow_close;
mod health;
mod icmp;
mod lb;
mod maps;
mod monitor;
mod net;
mod sock_addr;
mod sock_ops;
mod sock_release;
mod socks;
mod tc;
mod tc_in;
mod wide;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only satisfies no_std.
    loop {}
}

/// The kernel needs a GPL-compatible license to allow some helpers we call
/// (`bpf_fib_lookup` among them); "Dual MIT/GPL" is
/// one it accepts, and matches the crate's `MIT OR GPL-2.0`.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
