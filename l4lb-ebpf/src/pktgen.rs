//! A benchmark traffic source and sink (the `l4lb-bench` object, never the
//! datapath's): `l4lb-agent pktgen`
//! runs this program through BPF_PROG_TEST_RUN in live-frames mode on a
//! template UDP/IPv4 frame, and every run sends the frame out of
//! `PKTGEN_IFINDEX` (XDP_REDIRECT). A user-space sender (sendmmsg) tops out
//! below what a node's XDP program handles; this one costs tens of ns per
//! packet, so what a benchmark measures is the node, not the sender.
//!
//! Paced (`PKTGEN_INTERVAL_NS` set): a frame goes out only when it is due and
//! is dropped otherwise, so one long BPF_PROG_TEST_RUN call offers a steady
//! rate; pacing from user space between calls cannot, since each call costs
//! milliseconds of setup and teardown.
use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::Array,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_redirect},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use l4lb_common::{IPPROTO_UDP, PKTGEN_HEAD_LEN};

use crate::net::{ETH_P_IP_BE, ETH_TYPE_OFF, IP4_PROTO_OFF, L4_V4};

/// Where frames go (an interface of the network namespace it runs in). Set
/// by the loader; 0 (not set) sends nothing.
#[unsafe(no_mangle)]
static PKTGEN_IFINDEX: u32 = 0;
/// Distinct UDP source ports (flows), from 10000 up.
#[unsafe(no_mangle)]
static PKTGEN_FLOWS: u32 = 1;

/// The frame's Ethernet, IPv4 and UDP headers as the loader built them,
/// written over every frame before it goes: a frame's page comes back to the
/// sender after the receiving stack used it as an skb head, with the MACs,
/// TTL and (through a NAT) addresses rewritten for the next hop, and the
/// kernel does not copy the template in again unless the frame's metadata
/// changed. Without this most frames would carry the last hop's headers.
#[unsafe(no_mangle)]
static PKTGEN_HEAD: [u8; HEAD_LEN] = [0; HEAD_LEN];
const HEAD_LEN: usize = PKTGEN_HEAD_LEN;
const _: () = assert!(HEAD_LEN == L4_V4 + 8, "Ethernet + IPv4 + UDP");

/// Nanoseconds between frames; 0 sends every run.
#[unsafe(no_mangle)]
static PKTGEN_INTERVAL_NS: u64 = 0;
/// Paced: frames to send in all (the sender checks between calls, so the
/// program stops at exactly this many).
#[unsafe(no_mangle)]
static PKTGEN_LIMIT: u64 = u64::MAX;
/// After a stall (between calls) at most this many frames go out back to
/// back, so the receiver's ring (256 frames on a veth) does not overflow.
const MAX_BURST: u64 = 32;

/// `PACE_NEXT`: when the next frame is due (ns); `PACE_SENT`: frames sent
/// (paced only). One sender on one CPU writes them.
#[btf_map]
static PKTGEN_PACE: Array<u64, 2> = Array::new();
const PACE_NEXT: u32 = 0;
const PACE_SENT: u32 = 1;

/// Ethernet (14) + IPv4 without options (20): the UDP source port's offset.
const UDP_SPORT: usize = L4_V4;

#[xdp]
pub fn l4lb_pktgen(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + HEAD_LEN > end {
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
    if !due() {
        return xdp_action::XDP_DROP;
    }
    // SAFETY: a read-only global; start + HEAD_LEN <= end was checked above.
    unsafe {
        let head = core::ptr::read_volatile(&PKTGEN_HEAD);
        core::ptr::copy_nonoverlapping(head.as_ptr(), start as *mut u8, HEAD_LEN);
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

/// Unpaced, or paced and this frame's time has come (then counted).
#[inline(always)]
fn due() -> bool {
    // SAFETY: a read-only global the loader set before loading.
    let interval = unsafe { core::ptr::read_volatile(&PKTGEN_INTERVAL_NS) };
    if interval == 0 {
        return true;
    }
    let (Some(next), Some(sent)) = (
        PKTGEN_PACE.get_ptr_mut(PACE_NEXT),
        PKTGEN_PACE.get_ptr_mut(PACE_SENT),
    ) else {
        return false;
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a read-only global the loader set before loading.
    let limit = unsafe { core::ptr::read_volatile(&PKTGEN_LIMIT) };
    // SAFETY: array elements; the only writer is this program on one CPU.
    unsafe {
        if now < *next || *sent >= limit {
            return false;
        }
        let floor = now.saturating_sub(MAX_BURST * interval);
        *next = (*next).max(floor) + interval;
        *sent += 1;
    }
    true
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
