//! A benchmark traffic source and sink (the `l4lb-bench` object, never the
//! datapath's): `l4lb-agent pktgen`
//! runs this program through BPF_PROG_TEST_RUN in live-frames mode on a
//! template UDP/IPv4 frame, and every run sends the frame out of
//! `PKTGEN_IFINDEX` (XDP_REDIRECT). A user-space sender (sendmmsg) tops out
//! below what a node's XDP program handles; this one costs tens of ns per
//! packet, so what a benchmark measures is the node, not the sender.
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_prandom_u32, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
};
use l4lb_common::IPPROTO_UDP;

use crate::net::{ETH_P_IP_BE, ETH_TYPE_OFF, IP4_PROTO_OFF, L4_V4};

/// Where frames go (an interface of the network namespace it runs in). Set
/// by the loader; 0 (not set) sends nothing.
#[unsafe(no_mangle)]
static PKTGEN_IFINDEX: u32 = 0;
/// Distinct UDP source ports (flows), from 10000 up.
#[unsafe(no_mangle)]
static PKTGEN_FLOWS: u32 = 1;

/// Ethernet (14) + IPv4 without options (20): the UDP source port's offset.
const UDP_SPORT: usize = L4_V4;

#[xdp]
pub fn l4lb_pktgen(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + UDP_SPORT + 2 > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: read-only globals the loader set before loading.
    let (ifindex, flows) = unsafe {
        (
            core::ptr::read_volatile(&PKTGEN_IFINDEX),
            core::ptr::read_volatile(&PKTGEN_FLOWS),
        )
    };
    if ifindex == 0 {
        return xdp_action::XDP_ABORTED;
    }
    // A random flow per frame; the template's UDP checksum is 0 (none), so
    // the port needs no checksum update.
    // SAFETY: bpf_get_prandom_u32 has no preconditions.
    let flow = unsafe { bpf_get_prandom_u32() } % flows.max(1);
    let port = (10_000 + flow as u16).to_be_bytes();
    // SAFETY: start + UDP_SPORT + 2 <= end was checked above.
    unsafe { core::ptr::copy_nonoverlapping(port.as_ptr(), (start + UDP_SPORT) as *mut u8, 2) };
    // SAFETY: a plain helper call.
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

/// The benchmark's backend (`l4lb-agent pktsink`): drops every UDP/IPv4 frame
/// in the driver, so the receiving end costs every node datapath the same
/// little; the veth counts the drops (`rx_queue_0_xdp_drops`). Everything
/// else (ARP above all: the node must resolve the backend) passes.
#[xdp]
pub fn l4lb_sink(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + UDP_SPORT > end {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: start + 34 <= end was checked above (ethertype at 12, protocol at 23).
    let (ethertype, proto) = unsafe {
        (
            u16::from_ne_bytes(*((start + ETH_TYPE_OFF) as *const [u8; 2])),
            *((start + IP4_PROTO_OFF) as *const u8),
        )
    };
    if ethertype == ETH_P_IP_BE && proto == IPPROTO_UDP {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
