//! tc ingress: the XDP program's balancing (`balance.rs`) on the skb, for
//! interfaces whose packets may still carry a partial checksum.
//!
//! A packet a container sends through a veth with tx checksum offload on
//! arrives marked CHECKSUM_PARTIAL: its L4 checksum field holds only the
//! pseudo-header sum, to be completed on the way out. XDP sees a frame, not
//! the skb's mark, and its full-checksum update corrupts such a packet. Here
//! the rewrite goes through the kernel's helpers (`bpf_l3_csum_replace`,
//! `bpf_l4_csum_replace` with BPF_F_PSEUDO_HDR), which update a partial
//! checksum as partial and a full one as full. The agent attaches this
//! program instead of XDP on an interface with tx checksum offload on
//! (`datapath/xdp.rs`). The decision (connection table, Maglev, close
//! tracking, counters) is the XDP program's, from the same maps; replies
//! go through the same tc egress program. An ICMP error to a VIP address is
//! steered to the flow's backend by the XDP program's code (`icmp.rs`), on
//! the skb's head pulled linear and writable: its rewrite keeps the sum over
//! the packet unchanged (each changed field's checksum follows it), so a
//! complete checksum the skb carries stays valid. Not done here: forwarding
//! from the program (`--xdp-forward fib`: the kernel forwards).
use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use l4lb_common::Addr6;

use crate::{
    balance::{self, Nat, Packet, Step},
    csum::l4_replace_flags as l4_flags,
    icmp,
    net::{IP4_CHECK_OFF, IP4_DST_OFF, IP6_DST_OFF, L4_V4, L4_V6, l4_check_off},
};

#[classifier]
pub fn l4lb_tc_ingress(ctx: TcContext) -> i32 {
    match balance::decide(&ctx) {
        Step::Done(action) => action,
        Step::Icmp { dst, v6 } => steer_icmp(&ctx, dst, v6),
    }
}

/// An ICMP error to a VIP address: steered as in XDP, once the headers the
/// steering reads and writes are pulled into the linear head (a packet too
/// short for them fails the pull, then the bounds checks, and is guarded).
#[inline(always)]
fn steer_icmp(ctx: &TcContext, dst: Addr6, v6: bool) -> i32 {
    let end = if v6 { icmp::IN6_END } else { icmp::IN4_END };
    let _ = ctx.pull_data(end as u32);
    icmp::steer(ctx, dst, v6)
}

impl Packet for TcContext {
    type Verdict = i32;

    #[inline(always)]
    fn read<T>(&self, off: usize) -> Result<T, ()> {
        self.load(off).map_err(|_| ())
    }

    #[inline(always)]
    fn fits(&self, end: usize) -> bool {
        end <= TcContext::len(self) as usize
    }

    #[inline(always)]
    fn explain(&self) -> bool {
        false
    }

    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(TcContext::len(self))
    }

    #[inline(always)]
    fn verdict(&self, drop: bool) -> i32 {
        if drop { TC_ACT_SHOT } else { TC_ACT_OK }
    }

    #[inline(always)]
    fn nat(&self, nat: &Nat<'_>) -> i32 {
        let done = if nat.backend.family == 4 {
            nat4(self, nat)
        } else {
            nat6(self, nat)
        };
        if done.is_ok() {
            balance::finish(self, nat);
        }
        TC_ACT_OK
    }
}

/// Destination address and port → the backend's. The IPv4 header checksum
/// is always complete; the L4 one follows the address (pseudo-header) and
/// the port, as partial or full as it came.
#[inline(always)]
fn nat4(ctx: &TcContext, nat: &Nat<'_>) -> Result<(), i64> {
    let proto = nat.key.proto();
    let (dst, new_ip) = (nat.key.dst4(), nat.backend.addr[3]);
    let check = l4_check_off(L4_V4, proto);
    let flags = l4_flags(proto);
    ctx.skb.l4_csum_replace(
        check,
        dst as u64,
        new_ip as u64,
        flags | BPF_F_PSEUDO_HDR as u64 | 4,
    )?;
    rewrite_port(ctx, L4_V4, check, flags, nat)?;
    ctx.skb
        .l3_csum_replace(IP4_CHECK_OFF, dst as u64, new_ip as u64, 4)?;
    ctx.skb.store(IP4_DST_OFF, &new_ip, 0)?;
    Ok(())
}

#[inline(always)]
fn nat6(ctx: &TcContext, nat: &Nat<'_>) -> Result<(), i64> {
    let (proto, dst) = (nat.key.proto(), nat.key.dst());
    let check = l4_check_off(L4_V6, proto);
    let flags = l4_flags(proto);
    for i in 0..4 {
        ctx.skb.l4_csum_replace(
            check,
            dst[i] as u64,
            nat.backend.addr[i] as u64,
            flags | BPF_F_PSEUDO_HDR as u64 | 4,
        )?;
    }
    rewrite_port(ctx, L4_V6, check, flags, nat)?;
    ctx.skb.store(IP6_DST_OFF, &nat.backend.addr, 0)?;
    Ok(())
}

/// The destination port → the backend's, and the L4 checksum with it
/// (`l4_csum_replace` takes the old and new values, not the packet's bytes,
/// so the order against the address rewrite does not matter).
#[inline(always)]
fn rewrite_port(
    ctx: &TcContext,
    l4: usize,
    check: usize,
    flags: u64,
    nat: &Nat<'_>,
) -> Result<(), i64> {
    ctx.skb.l4_csum_replace(
        check,
        nat.key.dport() as u64,
        nat.backend.port as u64,
        flags | 2,
    )?;
    ctx.skb.store(l4 + 2, &nat.backend.port, 0)?;
    Ok(())
}
