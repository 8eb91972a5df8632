//! Map keys and values. Layout changes here are layout changes of pinned maps:
//! bump [`crate::types::ABI_VERSION`] when a struct changes.

/// Increments when a key or value layout changes; recorded in the pinned
/// `L4LB_META` map, and an agent refuses pinned maps of another version.
pub const ABI_VERSION: u32 = 13;

/// Value of `L4LB_META[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AbiRecord {
    /// [`ABI_MAGIC`]: the map is ours and the record was written.
    pub magic: u32,
    pub abi_version: u32,
}

/// "L4LA": marks a written [`AbiRecord`].
pub const ABI_MAGIC: u32 = 0x4c34_4c41;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// An IPv6 address, or an IPv4 address mapped as `::ffff:a.b.c.d`, as four
/// 32-bit words in network byte order (the layout of `bpf_sock_addr.user_ip6`).
pub type Addr6 = [u32; 4];

/// Key of the services map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub addr: Addr6,
    /// Network byte order.
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}

/// Value of the services map. Replaced whole by the agent (one map update), so
/// a program sees either the old or the new backend set, never a mix: the new
/// slot range is complete before the value naming it is written, and the old
/// range is reused only after a grace period.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Index into the per-service counters; stable for the service's life.
    pub id: u32,
    /// Size M of the service's Maglev table; 0 = VIP known, no backend accepts
    /// new connections (connect() is refused).
    pub slot_count: u32,
    /// Bumped on every change of the backend set.
    pub revision: u32,
    /// First index of the service's table in the slots array.
    pub slot_base: u32,
    /// Distinct backends in the table (members with weight > 0). With one,
    /// p2c has no second candidate to draw: connect() takes it at once.
    pub backends: u32,
}

/// Value of the backends map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    pub addr: Addr6,
    /// Network byte order.
    pub port: u16,
    /// 4 or 6: the family the address is to be written back in.
    pub family: u8,
    pub _pad: u8,
}

/// Key of the members map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberKey {
    pub service_id: u32,
    pub backend_id: u32,
}

/// Value of the members map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberValue {
    pub weight: u32,
    pub _pad: u32,
}

/// Key of the UDP reverse-NAT LRU: one entry per (socket, backend) the socket
/// was sent to, so replies from that backend are shown as coming from the VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNatKey {
    pub cookie: u64,
    pub addr: Addr6,
    /// Network byte order.
    pub port: u16,
    pub _pad: [u8; 6],
}

/// Value of the UDP reverse-NAT LRU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNatValue {
    pub addr: Addr6,
    /// Network byte order.
    pub port: u16,
    pub _pad: u16,
    /// Service id, so the agent can purge a removed VIP's entries.
    pub service_id: u32,
}

/// Per-CPU counters kept per service and per backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// connect() calls (TCP and UDP) sent to a backend (per service and per
    /// pair; a backend's own record leaves it 0).
    pub connects: u64,
    /// Unconnected UDP sendmsg() calls sent to a backend (as `connects`).
    pub sendmsgs: u64,
    /// connect()/sendmsg() refused, or XDP packets dropped, because no backend
    /// takes new connections.
    pub no_backend: u64,
    /// Replies whose source was rewritten back to the VIP (recvmsg/getpeername).
    pub revnat: u64,
    /// XDP: packets to the VIP rewritten to a backend.
    pub packets: u64,
    /// XDP: bytes of those packets (from the L3 header on).
    pub bytes: u64,
    /// XDP: flows that got a backend (connection-table inserts and re-picks).
    pub flows: u64,
    /// tc: reply packets whose source was rewritten backend → VIP.
    pub reply_packets: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.connects += other.connects;
        self.sendmsgs += other.sendmsgs;
        self.no_backend += other.no_backend;
        self.revnat += other.revnat;
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.flows += other.flows;
        self.reply_packets += other.reply_packets;
    }
}

/// A packet's 5-tuple as it appears on the wire (addresses IPv4-mapped for
/// IPv4, ports in network byte order). Key of the XDP connection table (the
/// client → VIP direction) and of the packet reverse-NAT table (the backend →
/// client direction, i.e. the reply's own 5-tuple).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr6,
    pub dst: Addr6,
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl FlowKey {
    /// The key of `src:sport -> dst:dport` (ports in network order).
    /// Zeroed, then filled: a literal's 3-byte pad compiles to a call to
    /// `memset` in the kernel programs.
    #[inline(always)]
    #[allow(clippy::field_reassign_with_default)] // see above
    pub fn new(src: Addr6, dst: Addr6, sport: u16, dport: u16, proto: u8) -> FlowKey {
        let mut k = FlowKey::default();
        k.src = src;
        k.dst = dst;
        k.sport = sport;
        k.dport = dport;
        k.proto = proto;
        k
    }
}

/// Key of the IPv4 connection table (`L4LB_CONNTRACK4`): a [`FlowKey`]
/// whose two addresses are IPv4-mapped, in 16 bytes instead of 40 (the
/// kernel hashes and compares the whole key on every packet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey4 {
    /// Network byte order.
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl FlowKey4 {
    /// `k` in the IPv4 table's form, if both its addresses are IPv4-mapped
    /// (else it belongs in `L4LB_CONNTRACK`).
    #[inline(always)]
    #[allow(clippy::field_reassign_with_default)] // see below
    pub fn of(k: &FlowKey) -> Option<FlowKey4> {
        if !(is_v4_mapped(&k.src) && is_v4_mapped(&k.dst)) {
            return None;
        }
        // Filled field by field: a literal's 3-byte pad compiles to a call
        // to `memset` in the kernel programs.
        let mut k4 = FlowKey4::default();
        k4.src = k.src[3];
        k4.dst = k.dst[3];
        k4.sport = k.sport;
        k4.dport = k.dport;
        k4.proto = k.proto;
        Some(k4)
    }

    /// The key of the IPv4 flow `src:sport -> dst:dport` (network order)
    /// as the two 8-byte words its 16 bytes are on a little-endian machine
    /// (src, dst | sport, dport, proto, a zero pad): the XDP program builds
    /// it in registers and stores it with two moves, no 40-byte
    /// [`FlowKey`] first and no `memset` for the pad.
    #[inline(always)]
    pub const fn words(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> [u64; 2] {
        [
            src as u64 | (dst as u64) << 32,
            sport as u64 | (dport as u64) << 16 | (proto as u64) << 32,
        ]
    }

    /// This key as [`FlowKey4::words`].
    #[inline(always)]
    pub const fn to_words(&self) -> [u64; 2] {
        FlowKey4::words(self.src, self.dst, self.sport, self.dport, self.proto)
    }

    /// The [`FlowKey`] this key stands for (both addresses IPv4-mapped).
    #[inline(always)]
    pub fn key(&self) -> FlowKey {
        FlowKey::new(
            crate::v4_mapped(self.src),
            crate::v4_mapped(self.dst),
            self.sport,
            self.dport,
            self.proto,
        )
    }
}

/// Value of the XDP connection table: the backend a flow was sent to. Not tied
/// to a revision: the flow keeps its backend across backend-set changes while
/// (service id, backend id) is still in the members map (weight 0 included).
/// While `L4LB_SVC_GEN[service_id]` still holds `generation`
/// ([`crate::ServiceGen`]), the backend set has not changed and the service
/// was not re-created, so `backend` (the backend's address as it was then) is
/// used without the service, member and backend lookups.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowValue {
    pub backend_id: u32,
    pub service_id: u32,
    /// TCP close bits (`FLOW_FIN_*`, see `tcp_close`); 0 for UDP.
    pub flags: u32,
    /// The service's generation when recorded; 0 = none (slow path).
    pub generation: u32,
    pub _pad: u32,
    pub backend: Backend,
}

/// Value of the packet reverse-NAT table (`L4LB_XDP_REVNAT`): the VIP a
/// backend's reply is shown as coming from, and the flow's TCP close bits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowRevNatValue {
    pub addr: Addr6,
    /// Network byte order.
    pub port: u16,
    pub _pad: u16,
    pub service_id: u32,
    /// TCP close bits (`FLOW_FIN_*`), the same as the flow's `FlowValue::flags`.
    pub flags: u32,
}

/// Value of the self map: the agent's process, as its own pid namespace sees
/// it. The hooks compare it with `bpf_get_ns_current_pid_tgid(dev, ino)`, so
/// an agent in a container is recognised, and a process of another pid
/// namespace with the same number is not. `tgid` 0 = no agent registered.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentId {
    /// Device of the agent's pid namespace (`/proc/self/ns/pid`), kernel encoding.
    pub pidns_dev: u64,
    /// Inode of the agent's pid namespace.
    pub pidns_ino: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// XDP metadata word that `l4lb-agent explain` puts in front of its crafted
/// packet (BPF_PROG_TEST_RUN): the XDP program decides as for any packet but
/// writes no map and bumps no counter. Received frames carry no metadata.
pub const EXPLAIN_MAGIC: u32 = 0x4c34_4c42; // "L4LB"

/// `::ffff:0:0/96` prefix word (network order) marking an IPv4-mapped address.
pub const V4_MAPPED_PREFIX_BE: u32 = u32::from_be(0x0000_ffff);

/// Builds the IPv4-mapped form of a network-order IPv4 address.
#[inline(always)]
pub const fn v4_mapped(ip4_be: u32) -> Addr6 {
    [0, 0, V4_MAPPED_PREFIX_BE, ip4_be]
}

/// True if `addr` is IPv4-mapped.
#[inline(always)]
pub const fn is_v4_mapped(addr: &Addr6) -> bool {
    addr[0] == 0 && addr[1] == 0 && addr[2] == V4_MAPPED_PREFIX_BE
}

/// One entry of the socket marks (`L4LB_SOCKS`, an array): the socket's
/// cookie (0: free) and its mark. 64 bytes, one cache line. A socket's entry
/// is one of the [`SOCK_PROBE_SLOTS`] from `cookie % MAX_SOCKS` on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockSlot {
    pub cookie: u64,
    pub mark: crate::SockMark,
}

const _: () = assert!(core::mem::size_of::<SockSlot>() == 64);
const _: () = assert!(core::mem::size_of::<FlowKey4>() == 16);
// The kernel side wraps slot indices with a mask.
const _: () = assert!(crate::MAX_SOCKS.is_power_of_two());

#[cfg(feature = "user")]
mod pod {
    use super::*;
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for MemberKey {}
    unsafe impl aya::Pod for MemberValue {}
    unsafe impl aya::Pod for RevNatKey {}
    unsafe impl aya::Pod for RevNatValue {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowKey4 {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for crate::FlowSlot4 {}
    unsafe impl aya::Pod for FlowRevNatValue {}
    unsafe impl aya::Pod for AgentId {}
    unsafe impl aya::Pod for AbiRecord {}
    unsafe impl aya::Pod for crate::LbConfig {}
    unsafe impl aya::Pod for crate::BackendHealth {}
    unsafe impl aya::Pod for crate::SockMark {}
    unsafe impl aya::Pod for SockSlot {}
    unsafe impl aya::Pod for crate::LbStats {}
    unsafe impl aya::Pod for crate::ProbeMark {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words laid out as a little-endian machine stores them.
    fn from_words(w: [u64; 2]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&w[0].to_le_bytes());
        b[8..].copy_from_slice(&w[1].to_le_bytes());
        b
    }

    fn bytes_of(k: &FlowKey4) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&k.src.to_ne_bytes());
        b[4..8].copy_from_slice(&k.dst.to_ne_bytes());
        b[8..10].copy_from_slice(&k.sport.to_ne_bytes());
        b[10..12].copy_from_slice(&k.dport.to_ne_bytes());
        b[12] = k.proto;
        b
    }

    #[test]
    fn words_are_the_key_that_of_makes() {
        let key = FlowKey {
            src: v4_mapped(0xc612_0102u32.to_be()),
            dst: v4_mapped(0x0b00_0001u32.to_be()),
            sport: 40000u16.to_be(),
            dport: 9u16.to_be(),
            proto: 17,
            _pad: [0; 3],
        };
        let k4 = FlowKey4::of(&key).expect("both IPv4-mapped");
        let w = FlowKey4::words(k4.src, k4.dst, k4.sport, k4.dport, k4.proto);
        if cfg!(target_endian = "little") {
            assert_eq!(from_words(w), bytes_of(&k4));
        }
        assert_eq!(k4.key(), key);
    }
}
