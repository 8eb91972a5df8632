//! l4lb kernel programs. One file per hook family (`sock_addr.rs`: cgroup socket
//! hooks; `xdp.rs`: XDP ingress; `tc.rs`: tc reply); the service lookup and the
//! backend choice live in `lb.rs` so every datapath picks backends the same way.
//! `pktgen.rs` is a benchmark traffic source, loaded only by `l4lb-agent pktgen`.
#![no_std]
#![no_main]

mod lb;
mod maps;
mod pktgen;
mod sock_addr;
mod tc;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; this only satisfies no_std.
    loop {}
}

/// The kernel needs a GPL-compatible license to allow some helpers we call.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
