//! Map definitions. Names and sizes come from `l4lb_common::maps`; the agent
//! may resize them at load time (aya `EbpfLoader::set_max_entries`).
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    helpers::bpf_get_smp_processor_id,
    macros::btf_map,
};
use l4lb_common::{
    Addr6, AgentId, Backend, BackendHealth, CT_COUNTERS, FLOW_SLOTS, FlowKey, FlowRevNatValue,
    FlowSlot4, FlowValue, GUARD_REASONS, ICMP_COUNTERS, LbConfig, MAX_BACKENDS, MAX_FLOWS,
    MAX_MEMBERS, MAX_REVNAT, MAX_SERVICES as VIP_ADDRS, MAX_SERVICES, MAX_SLOTS, MAX_SOCKS,
    MONITOR_RING_BYTES, MemberKey, MemberValue, MonitorConfig, MonitorEvent, ProbeMark, RevNatKey,
    RevNatValue, ServiceGen, ServiceKey, ServiceStats, ServiceValue, SockSlot, Stats,
    VIP_FILTER_WORDS,
};

const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;
/// The agent writes the slots array through mmap, not one syscall per slot.
const MMAPABLE: usize = BPF_F_MMAPABLE as usize;

#[btf_map]
pub static L4LB_SERVICES: HashMap<
    ServiceKey,
    ServiceValue,
    { MAX_SERVICES as usize },
    NO_PREALLOC,
> = HashMap::new();

#[btf_map]
pub static L4LB_SLOTS: Array<u32, { MAX_SLOTS as usize }, MMAPABLE> = Array::new();

/// Backend id → address, written by the agent through mmap (a connect reads
/// one array element instead of hashing into a table); an entry whose
/// `family` is 0 is a free id.
#[btf_map]
pub static L4LB_BACKENDS: Array<Backend, { MAX_BACKENDS as usize }, MMAPABLE> = Array::new();

/// The backend of id `id`, read in place (no copy onto the stack: XDP's
/// frame is near the verifier's 512 bytes); None for a free id.
#[inline(always)]
pub fn backend(id: u32) -> Option<&'static Backend> {
    L4LB_BACKENDS.get(id).filter(|b| b.family != 0)
}

/// Not read by the socket hooks; the XDP program checks a tracked flow's
/// backend is still a member. The agent and CLI read it too. Preallocated:
/// a full sync puts ~50,000 members, and an insert that allocates its
/// element took about twice the time (BENCHMARKS.md, session 20, sync14).
#[btf_map]
pub static L4LB_MEMBERS: HashMap<MemberKey, MemberValue, { MAX_MEMBERS as usize }> = HashMap::new();

#[btf_map]
pub static L4LB_REVNAT: LruHashMap<RevNatKey, RevNatValue, { MAX_REVNAT as usize }> =
    LruHashMap::new();

/// Per service id and CPU: [`ServiceStats`] at [`cpu_record`]`(id)`. A
/// plain array, one allocation, where a per-CPU array of 65,536 entries made
/// one per-CPU allocation per entry (~50 ms of the agent's start each).
/// Mmap-able for the alignment: values start on a page and a record is
/// whole cache lines, so two CPUs never write one line; the agent (the
/// resizer: `max_entries` = ids x CPUs) reads and zeroes an id's run of
/// records in one batch call.
#[btf_map]
pub static L4LB_SVC_STATS: Array<ServiceStats, { MAX_SERVICES as usize }, MMAPABLE> = Array::new();

/// Per backend id and CPU, as [`L4LB_SVC_STATS`] (a [`Stats`] is one line).
#[btf_map]
pub static L4LB_BE_STATS: Array<Stats, { MAX_BACKENDS as usize }, MMAPABLE> = Array::new();

/// Possible CPUs, set by the agent at load (frozen read-only data): the
/// counter arrays' stride per id.
#[unsafe(no_mangle)]
static L4LB_NR_CPUS: u32 = 1;

/// The index of this CPU's record of `id` in a counter array (`id * CPUs +
/// cpu`: an id's records side by side, so the agent sums one run of them).
/// None when it cannot be there; an id past the array's ids lands past its
/// end, which the lookup refuses.
#[inline(always)]
pub fn cpu_record(id: u32) -> Option<u32> {
    this_cpu()?.record(id)
}

/// This CPU and the counter arrays' stride, read once for a packet's
/// records of both its service and its backend.
#[derive(Clone, Copy)]
pub struct CpuRecords {
    cpu: u32,
    cpus: u32,
}

/// None on a CPU past the stride the agent loaded (it cannot have a record).
#[inline(always)]
pub fn this_cpu() -> Option<CpuRecords> {
    // SAFETY: a plain read of a static; volatile so the compiler leaves the
    // value to the loader.
    let cpus = unsafe { core::ptr::read_volatile(&L4LB_NR_CPUS) };
    // SAFETY: a helper without arguments (inlined by the verifier).
    let cpu = unsafe { bpf_get_smp_processor_id() };
    (cpu < cpus).then_some(CpuRecords { cpu, cpus })
}

impl CpuRecords {
    /// See [`cpu_record`].
    #[inline(always)]
    pub fn record(self, id: u32) -> Option<u32> {
        // In 64 bits, one range check: no u32 product wraps onto another id.
        u32::try_from(u64::from(id) * u64::from(self.cpus) + u64::from(self.cpu)).ok()
    }
}

/// XDP connection table: client → VIP 5-tuple → backend (see `xdp.rs`).
#[btf_map]
pub static L4LB_CONNTRACK: LruHashMap<FlowKey, FlowValue, { MAX_FLOWS as usize }> =
    LruHashMap::new();

/// The same for IPv4 flows: slots under a 16-byte key, read inline (`ct4.rs`).
#[btf_map]
pub static L4LB_CONNTRACK4: Array<FlowSlot4, { FLOW_SLOTS as usize }> = Array::new();

/// What the IPv4 connection table could not keep (`CT_*`, `ct4.rs`).
#[btf_map]
pub static L4LB_CT_STATS: PerCpuArray<u64, { CT_COUNTERS.len() }> = PerCpuArray::new();

/// Packet reverse NAT: reply 5-tuple (backend → client) → VIP; written by XDP,
/// read by the tc reply program.
#[btf_map]
pub static L4LB_XDP_REVNAT: LruHashMap<FlowKey, FlowRevNatValue, { MAX_FLOWS as usize }> =
    LruHashMap::new();

/// XDP flags (`XDP_F_*`) at index 0, written by the agent.
#[btf_map]
pub static L4LB_XDP_CONFIG: Array<u32, 1> = Array::new();

/// The agent's identity (index 0): its own calls are never rewritten (`sock_addr.rs`).
#[btf_map]
pub static L4LB_SELF: Array<AgentId, 1> = Array::new();

/// VIP address → services on it: what XDP must not pass unparsed (`xdp.rs`).
#[btf_map]
pub static L4LB_VIP_ADDRS: HashMap<Addr6, u32, { VIP_ADDRS as usize }, NO_PREALLOC> =
    HashMap::new();

/// Packets to a VIP address dropped by XDP, by `GUARD_*` reason.
#[btf_map]
pub static L4LB_VIP_GUARD: PerCpuArray<u64, { GUARD_REASONS.len() }> = PerCpuArray::new();

/// Backend id → what this node saw of its handshakes (`health.rs`, `sock_ops.rs`).
/// Mmap-able for the alignment only: such an array's values start on a
/// page, so each 128-byte entry is two whole cache lines (a plain array's
/// start 312 bytes into its allocation, and an entry then spans three).
#[btf_map]
pub static L4LB_HEALTH: Array<BackendHealth, { MAX_BACKENDS as usize }, MMAPABLE> = Array::new();

/// Per-socket marks by socket cookie (`socks.rs`): which backend
/// connect4/6 sent a TCP socket to. A preallocated array rather than a hash
/// (an insert was ~0.5 µs of a VIP connect4) or socket-local storage (which
/// allocates and frees per socket, ~1.5 µs per connection). Mmap-able for
/// the alignment only (see `L4LB_HEALTH`): a 64-byte slot is one cache line,
/// not the tail of one and most of the next.
#[btf_map]
pub static L4LB_SOCKS: Array<SockSlot, { MAX_SOCKS as usize }, MMAPABLE> = Array::new();

/// The balancing policy (`LB_POLICY_*`, index 0), written by the agent for
/// its CLI: the programs take the policy and probe mode from read-only data
/// set at load (`lb/p2c.rs`), not from here.
#[btf_map]
pub static L4LB_LB_CONFIG: Array<LbConfig, 1> = Array::new();

/// Counters per (service, backend); see `l4lb_common::MEMBER_STATS_MAP`.
#[btf_map]
pub static L4LB_MEMBER_STATS: PerCpuHashMap<
    MemberKey,
    Stats,
    { MAX_MEMBERS as usize },
    NO_PREALLOC,
> = PerCpuHashMap::new();

/// Decision events for `l4lb-agent monitor`; see `l4lb_common::monitor`.
#[btf_map]
pub static L4LB_MONITOR: RingBuf<MonitorEvent, { MONITOR_RING_BYTES as usize }> = RingBuf::new();

/// The monitor's lease and filters (index 0).
#[btf_map]
pub static L4LB_MONITOR_CONFIG: Array<MonitorConfig, 1> = Array::new();
/// Service id → its backends local to this node (`lb/local.rs`), written by the agent.
#[btf_map]
pub static L4LB_LOCAL: HashMap<u32, l4lb_common::LocalSet, { MAX_SERVICES as usize }, NO_PREALLOC> =
    HashMap::new();

/// Backend id → the agent's probes of it (`l4lb_common::probe`): written by
/// the agent only; a revival there makes a down backend up again.
#[btf_map]
pub static L4LB_PROBES: Array<ProbeMark, { MAX_BACKENDS as usize }> = Array::new();

/// ICMP errors about VIP flows, by `ICMP_*` (`icmp.rs`).
#[btf_map]
pub static L4LB_ICMP_STATS: PerCpuArray<u64, { ICMP_COUNTERS.len() }> = PerCpuArray::new();

/// The ICMP translation limit's window on this CPU: [start ns, count]. Not pinned.
#[btf_map]
pub static L4LB_ICMP_RATE: PerCpuArray<[u64; 2], 1> = PerCpuArray::new();

/// Service id → its generation (`l4lb_common::fast_path`), written by the
/// agent through mmap before the service value: an established flow is
/// checked against it instead of looking the service up.
#[btf_map]
pub static L4LB_SVC_GEN: Array<ServiceGen, { MAX_SERVICES as usize }, MMAPABLE> = Array::new();

/// VIP address pre-filter, a bitmap (`l4lb_common::vip_filter_bit`): a
/// clear bit = not a VIP address; written by the agent through mmap.
#[btf_map]
pub static L4LB_VIP_FILTER: Array<u64, { VIP_FILTER_WORDS as usize }, MMAPABLE> = Array::new();
