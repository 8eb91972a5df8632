//! A flow's two entries (connection table, packet reverse NAT) and what
//! `l4lb_common::close_step` does to them: XDP (client side) and the tc reply
//! program (backend side) share it, so both directions close a flow the same way.
use core::intrinsics::{AtomicOrdering, atomic_or};

use l4lb_common::{Backend, CloseStep, FlowKey, FlowRevNatValue, FlowValue, ServiceValue};

use crate::{
    client::Client,
    ct,
    maps::{self, L4LB_SVC_GEN, L4LB_XDP_REVNAT},
};

/// The reply's 5-tuple (backend → client): the reverse-NAT key of a flow
/// whose client-side key is `client`, sent to `backend`.
#[inline(always)]
pub fn reply_key(client: &FlowKey, backend: &Backend) -> FlowKey {
    FlowKey {
        src: backend.addr,
        dst: client.src,
        sport: backend.port,
        dport: client.sport,
        proto: client.proto,
        _pad: [0; 3],
    }
}

/// The client's 5-tuple (client → VIP): the connection-table key of a flow
/// whose reply `reply` is shown as coming from `vip`.
#[inline(always)]
pub fn client_key(reply: &FlowKey, vip: &FlowRevNatValue) -> FlowKey {
    FlowKey {
        src: reply.dst,
        dst: vip.addr,
        sport: reply.dport,
        dport: vip.port,
        proto: reply.proto,
        _pad: [0; 3],
    }
}

/// Records a new flow: its connection-table entry (client key → backend)
/// and its reverse-NAT entry (reply key → VIP). Out of line: the values and
/// the reply key stay off the XDP program's stack frame (BPF's 512 bytes are
/// shared by a call chain).
#[inline(never)]
pub fn open(client: &FlowKey, svc: &ServiceValue, backend_id: u32, backend: &Backend) {
    let service_id = svc.id;
    // One block per entry, so the two values can share stack.
    {
        let flow = FlowValue {
            backend_id,
            service_id,
            flags: 0,
            generation: generation(svc),
            _pad: 0,
            backend: *backend,
        };
        // A failed insert only costs a re-pick on the next packet.
        ct::insert(client, &flow);
    }
    let vip = FlowRevNatValue {
        addr: client.dst,
        port: client.dport,
        _pad: 0,
        service_id,
        flags: 0,
    };
    let _ = L4LB_XDP_REVNAT.insert(reply_key(client, backend), &vip, 0);
}

/// A tracked flow whose backend is still a member after a change of the set:
/// its entry takes the service's current generation and the backend's
/// address as read now, so its next packets take the established path
/// again. Out of line, like [`open`].
#[inline(never)]
pub fn refresh(client: &FlowKey, svc: &ServiceValue, backend: &Backend) {
    let generation = generation(svc);
    if generation == 0 {
        return;
    }
    if let Some(f) = ct::get_ptr_mut(client) {
        // SAFETY: an element of the map; a racing writer only costs a re-check.
        unsafe {
            (*f).backend = *backend;
            (*f).generation = generation;
        }
    }
}

/// The service's generation if the array describes the service value the
/// pick was made from; else 0: the agent is between the two writes, and the
/// flow is checked the slow way (members) until its next pick. The
/// generation is read first: the agent clears it before changing the rest
/// and writes it last, so a new generation is never paired with the old
/// revision and slot base.
#[inline(always)]
fn generation(svc: &ServiceValue) -> u32 {
    let Some(g) = L4LB_SVC_GEN.get_ptr(svc.id) else {
        return 0;
    };
    // SAFETY: an element of the array; volatile keeps the reads in order.
    unsafe {
        let generation = core::ptr::addr_of!((*g).generation).read_volatile();
        let live = core::ptr::addr_of!((*g).live).read_volatile();
        let revision = core::ptr::addr_of!((*g).revision).read_volatile();
        let slot_base = core::ptr::addr_of!((*g).slot_base).read_volatile();
        if live != 0 && revision == svc.revision && slot_base == svc.slot_base {
            generation
        } else {
            0
        }
    }
}

/// A step (not Keep) in one register for the out-of-line calls below: the
/// bits to mark, or [`END`]. Passed as the enum, End's payload register is
/// left unset, and the verifier refuses the callee's read of it.
#[inline(always)]
pub fn encode(step: CloseStep) -> u32 {
    match step {
        CloseStep::Mark(bits) => bits,
        CloseStep::Keep | CloseStep::End => END,
    }
}

/// [`encode`]'s End (a mark always has a bit set).
const END: u32 = 0;

#[inline(always)]
fn decode(step: u32) -> CloseStep {
    if step == END {
        CloseStep::End
    } else {
        CloseStep::Mark(step)
    }
}

/// `step` ([`encode`]d) for the flow of client key `client` sent to backend
/// `backend_id` (XDP). Out of line, like [`from_backend`]: only FIN, RST and
/// last-ACK packets call it, and the reply key it builds stays off the
/// calling program's stack frame.
#[inline(never)]
pub fn from_client(step: u32, client: Client<'_>, backend_id: u32) {
    let client = client.key();
    if let Some(backend) = maps::backend(backend_id) {
        apply(decode(step), &client, &reply_key(&client, backend));
    }
}

/// `step` ([`encode`]d) for the flow whose reply is `reply`, shown as from `vip` (tc).
#[inline(never)]
pub fn from_backend(step: u32, reply: &FlowKey, vip: &FlowRevNatValue) {
    apply(decode(step), &client_key(reply, vip), reply);
}

/// Applies `step` to the flow keyed `client` / `reply`. Close bits are set
/// with an atomic OR: XDP and tc may mark the same flow at once on two CPUs
/// (simultaneous close), and neither bit may be lost.
#[inline(always)]
pub fn apply(step: CloseStep, client: &FlowKey, reply: &FlowKey) {
    match step {
        CloseStep::Keep => {}
        CloseStep::Mark(bit) => {
            if let Some(v) = ct::get_ptr_mut(client) {
                // SAFETY: an aligned u32 of a live map value.
                unsafe { or(&raw mut (*v).flags, bit) };
            }
            if let Some(v) = L4LB_XDP_REVNAT.get_ptr_mut(reply) {
                // SAFETY: as above.
                unsafe { or(&raw mut (*v).flags, bit) };
            }
        }
        CloseStep::End => {
            // Either may be gone already (LRU, the other side's End).
            ct::remove(client);
            let _ = L4LB_XDP_REVNAT.remove(reply);
        }
    }
}

/// # Safety
/// `p` points to an aligned `u32` inside a map value.
#[inline(always)]
unsafe fn or(p: *mut u32, bit: u32) {
    // SAFETY: the caller's.
    unsafe { atomic_or::<u32, u32, { AtomicOrdering::Relaxed }>(p, bit) };
}
