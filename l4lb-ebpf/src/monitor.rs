//! Decision events for `l4lb-agent monitor` (`l4lb_common::monitor`). The
//! hooks call [`watching`] (one array lookup and a compare: all they pay
//! while nobody listens) and, when it holds, [`emit`], which applies the
//! lease, the filters and the sampling, then writes the event straight into
//! the ring buffer: nothing is built on the stack, which XDP has little of.
use core::ptr::addr_of_mut;

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use l4lb_common::{FlowKey, MONITOR_ANY, MonitorEvent};

use crate::maps::{L4LB_MONITOR, L4LB_MONITOR_CONFIG};

/// A monitor holds a lease (it may have lapsed: [`emit`] checks the time).
#[inline(always)]
pub fn watching() -> bool {
    L4LB_MONITOR_CONFIG.get(0).is_some_and(|c| c.until_ns != 0)
}

/// `what` = hook | reason << 8 | policy << 16. `key`: client (may be
/// zero), VIP, ports, protocol. `backend_id` 0: none was chosen.
#[inline(never)]
pub fn emit(what: u32, key: &FlowKey, service_id: u32, backend_id: u32, pid_tgid: u64) {
    let Some(c) = L4LB_MONITOR_CONFIG.get(0) else {
        return;
    };
    // SAFETY: helpers without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if now >= c.until_ns
        || (c.service_id != MONITOR_ANY && c.service_id != service_id)
        || (c.backend_id != MONITOR_ANY && c.backend_id != backend_id)
        || (c.sample > 1 && unsafe { bpf_get_prandom_u32() } % c.sample != 0)
    {
        return;
    }
    let Some(mut entry) = L4LB_MONITOR.reserve(0) else {
        return; // full: the reader is behind; never wait for it
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is the reserved, writable event; every field is written
    // in place before it is submitted.
    unsafe {
        addr_of_mut!((*e).ts_ns).write(now);
        addr_of_mut!((*e).pid_tgid).write(pid_tgid);
        addr_of_mut!((*e).client).write(key.src);
        addr_of_mut!((*e).vip).write(key.dst);
        addr_of_mut!((*e).client_port).write(key.sport);
        addr_of_mut!((*e).vip_port).write(key.dport);
        addr_of_mut!((*e).proto).write(key.proto);
        addr_of_mut!((*e).hook).write(what as u8);
        addr_of_mut!((*e).reason).write((what >> 8) as u8);
        addr_of_mut!((*e).policy).write((what >> 16) as u8);
        addr_of_mut!((*e)._pad).write([0; 6]);
        addr_of_mut!((*e).service_id).write(service_id);
        addr_of_mut!((*e).backend_id).write(backend_id);
        match crate::maps::backend(backend_id) {
            Some(b) => {
                addr_of_mut!((*e).backend).write(b.addr);
                addr_of_mut!((*e).backend_port).write(b.port);
            }
            None => {
                addr_of_mut!((*e).backend).write([0; 4]);
                addr_of_mut!((*e).backend_port).write(0);
            }
        }
    }
    entry.submit(0);
}

/// [`emit`]'s `what`.
#[inline(always)]
pub const fn what(hook: u8, reason: u8, policy: u32) -> u32 {
    hook as u32 | (reason as u32) << 8 | policy << 16
}
