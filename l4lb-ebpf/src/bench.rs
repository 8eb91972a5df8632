//! The benchmark's kernel programs (`pktgen.rs`): a second object, built next
//! to the datapath's (`main.rs`) and loaded only by `l4lb-agent pktgen` /
//! `pktsink`, so the production object carries no traffic generator.
#![no_std]
#![no_main]

// Shared header definitions; the benchmark programs use only a few of them.
#[allow(dead_code)]
mod net;
mod pktgen;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only satisfies no_std.
    loop {}
}

/// The same licence as the datapath object (see `main.rs`).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
