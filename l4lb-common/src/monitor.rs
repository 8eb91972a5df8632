//! `l4lb-agent monitor`: one event per balancing decision, sent by the
//! programs through a ring buffer while a monitor holds a lease in the
//! monitor config map. With no lease the programs pay one array lookup and a
//! compare per decision, and write nothing.

/// Ring buffer of [`MonitorEvent`]s (pinned; read by `l4lb-agent monitor`).
pub const MONITOR_MAP: &str = "L4LB_MONITOR";
/// Bytes of the ring buffer (a power of two, a multiple of the page size):
/// ~2,600 events. When a monitor falls behind, events that do not fit are
/// dropped: a program never waits for the reader.
pub const MONITOR_RING_BYTES: u32 = 256 * 1024;
/// [`MonitorConfig`] at index 0 (pinned), written by the monitor.
pub const MONITOR_CONFIG_MAP: &str = "L4LB_MONITOR_CONFIG";

/// A filter field that matches anything.
pub const MONITOR_ANY: u32 = u32::MAX;

/// What a running monitor asks for. `until_ns` is a lease on
/// `bpf_ktime_get_ns` (CLOCK_MONOTONIC): the monitor renews it while it runs,
/// so one that dies stops the events within the lease.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorConfig {
    /// 0: nobody listens.
    pub until_ns: u64,
    /// Report one decision in `sample` (1: all; 0 is taken as 1).
    pub sample: u32,
    /// Only this service id ([`MONITOR_ANY`]: all).
    pub service_id: u32,
    /// Only this backend id ([`MONITOR_ANY`]: all).
    pub backend_id: u32,
    /// The monitor's pid: a second monitor refuses a live lease of another.
    pub owner_pid: u32,
}

/// Which program decided.
pub const HOOK_CONNECT: u8 = 1;
pub const HOOK_SENDMSG: u8 = 2;
pub const HOOK_XDP: u8 = 3;

/// Why it decided what it did.
/// A new connection or flow got a backend (`policy` says how).
pub const REASON_NEW: u8 = 1;
/// Unconnected UDP sendmsg(): the socket's own backend (per-socket hash).
pub const REASON_SOCKET: u8 = 2;
/// XDP: a tracked flow kept its backend.
pub const REASON_TRACKED: u8 = 3;
/// XDP: a tracked flow kept a backend whose weight is now 0 (drains).
pub const REASON_TRACKED_WEIGHT0: u8 = 4;
/// connect(): the one half-open probe of a backend down for this node.
pub const REASON_PROBE: u8 = 5;
/// No backend takes new connections: connect()/sendmsg() refused, XDP dropped.
pub const REASON_NO_BACKEND: u8 = 6;
/// Refused although a backend was chosen (an IPv4 VIP with an IPv6 backend).
pub const REASON_REFUSED: u8 = 7;

pub const fn hook_name(hook: u8) -> &'static str {
    match hook {
        HOOK_CONNECT => "connect",
        HOOK_SENDMSG => "sendmsg",
        HOOK_XDP => "xdp",
        _ => "?",
    }
}

pub const fn reason_name(reason: u8) -> &'static str {
    match reason {
        REASON_NEW => "new",
        REASON_SOCKET => "socket",
        REASON_TRACKED => "tracked",
        REASON_TRACKED_WEIGHT0 => "tracked-weight-0",
        REASON_PROBE => "probe",
        REASON_NO_BACKEND => "no-backend",
        REASON_REFUSED => "refused",
        _ => "?",
    }
}

/// One decision. Addresses IPv4-mapped, ports in network byte order, as in
/// every map; `backend` is zero when none was chosen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorEvent {
    pub ts_ns: u64,
    /// Socket hooks: the calling task (`tgid << 32 | pid`); XDP: 0.
    pub pid_tgid: u64,
    /// XDP: the packet's source; sendmsg: the source the caller gave, if any.
    pub client: crate::Addr6,
    pub vip: crate::Addr6,
    pub backend: crate::Addr6,
    pub client_port: u16,
    pub vip_port: u16,
    pub backend_port: u16,
    pub hook: u8,
    pub reason: u8,
    pub service_id: u32,
    pub backend_id: u32,
    pub proto: u8,
    /// `LB_POLICY_*` for connect(); 0 elsewhere.
    pub policy: u8,
    pub _pad: [u8; 6],
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::MonitorConfig {}
    unsafe impl aya::Pod for super::MonitorEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout_is_fixed() {
        // 8 + 8 + 3 × 16 + 3 × 2 + 2 + 4 + 4 + 2 + 6
        assert_eq!(core::mem::size_of::<MonitorEvent>(), 88);
        assert_eq!(core::mem::size_of::<MonitorConfig>(), 24);
    }

    #[test]
    fn every_reason_and_hook_has_a_name() {
        for r in REASON_NEW..=REASON_REFUSED {
            assert_ne!(reason_name(r), "?");
        }
        for h in HOOK_CONNECT..=HOOK_XDP {
            assert_ne!(hook_name(h), "?");
        }
    }
}
