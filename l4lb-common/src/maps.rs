//! Map names and default capacities: defined here once, used by the kernel
//! programs (map definitions) and by the agent (pin paths, CLI, sizing).

/// VIP (addr, port, proto) → [`crate::ServiceValue`].
pub const SERVICES_MAP: &str = "L4LB_SERVICES";
/// Slot index → backend id: every service's Maglev table, each a contiguous
/// range of this one mmap-able array (the agent writes tables by memory copy).
pub const SLOTS_MAP: &str = "L4LB_SLOTS";
/// backend id → [`crate::Backend`].
pub const BACKENDS_MAP: &str = "L4LB_BACKENDS";
/// (service id, backend id) → weight: the service's full backend set, weight-0
/// members included (they hold no slot). Read by the agent, the CLI, XDP and
/// connect4/6 (p2c compares cost per unit of weight).
pub const MEMBERS_MAP: &str = "L4LB_MEMBERS";
/// UDP reverse NAT: (socket cookie, backend) → VIP, so replies (and a
/// connected UDP socket's getpeername) show the VIP.
pub const REVNAT_MAP: &str = "L4LB_REVNAT";
/// Per-CPU [`crate::ServiceStats`] indexed by service id: the service's
/// traffic counters, how p2c decided and how connect() used its local set.
pub const SERVICE_STATS_MAP: &str = "L4LB_SVC_STATS";
/// Per-CPU counters indexed by backend id.
pub const BACKEND_STATS_MAP: &str = "L4LB_BE_STATS";

/// XDP connection table (LRU): client → VIP 5-tuple ([`crate::FlowKey`]) →
/// backend id + service id + TCP close bits + the service generation it was
/// recorded at and the backend's address ([`crate::FlowValue`]).
pub const CONNTRACK_MAP: &str = "L4LB_CONNTRACK";
/// The same for IPv4 flows: an array of [`crate::FlowSlot4`] under
/// [`crate::FlowKey4`]'s 16 bytes, read inline by the established path
/// (`flow_slots.rs`); `L4LB_CONNTRACK` keeps the IPv6 flows.
pub const CONNTRACK4_MAP: &str = "L4LB_CONNTRACK4";
/// Packet reverse NAT (LRU), written by XDP for every flow it sends to a
/// backend and read by the tc reply program: the reply's 5-tuple (backend →
/// client) → the VIP to show as its source and the TCP close bits
/// ([`crate::FlowRevNatValue`]).
pub const XDP_REVNAT_MAP: &str = "L4LB_XDP_REVNAT";

/// The agent's own identity ([`crate::AgentId`], index 0): the socket hooks
/// never rewrite that process's calls. Pinned, so the programs a previous
/// agent left attached honour a restarted agent too.
pub const SELF_MAP: &str = "L4LB_SELF";
/// VIP address → number of services on it ([`crate::Addr6`] → `u32`), kept by
/// the agent equal to the services map: XDP drops what it cannot parse
/// (fragments, IPv4 options, IPv6 extension headers, ICMP, …) when it is sent
/// to one of these addresses, instead of passing it on with the VIP in it.
pub const VIP_ADDRS_MAP: &str = "L4LB_VIP_ADDRS";
/// Per-CPU counters (`u64`, indexed by `GUARD_*`) of the packets to a VIP
/// address that XDP dropped because it could not balance them.
pub const VIP_GUARD_MAP: &str = "L4LB_VIP_GUARD";
/// Reasons counted in [`VIP_GUARD_MAP`].
pub const GUARD_FRAGMENT: u32 = 0;
pub const GUARD_IP_OPTIONS: u32 = 1;
pub const GUARD_EXT_HEADER: u32 = 2;
pub const GUARD_OTHER_PROTO: u32 = 3;
pub const GUARD_TRUNCATED: u32 = 4;
/// Slots of [`VIP_GUARD_MAP`]; names of the reasons, by index.
pub const GUARD_REASONS: [&str; 5] = [
    "fragment",
    "ip_options",
    "ext_header",
    "other_proto",
    "truncated",
];

/// Backend id → [`crate::BackendHealth`] (array): handshakes in flight,
/// outcomes, live connections, down/probe state, seen from this node. Written
/// by the `sock_ops` program and connect4/6 (atomics); zeroed by the agent
/// when an id is handed to a new backend; read by connect4/6 (p2c) and the CLI.
pub const HEALTH_MAP: &str = "L4LB_HEALTH";
/// Socket marks ([`crate::SockSlot`], array indexed by socket cookie, see
/// [`SOCK_PROBE_SLOTS`]): connect4/6 marks each TCP socket it sent to a
/// backend (with the VIP, which getpeername4/6 shows from here: TCP sockets
/// get no `L4LB_REVNAT` entry); the `sock_ops` program finds it there, the
/// `sock_release` one frees the slot when the application closes the
/// socket. An array rather than a hash: an insert into a (LRU) hash was
/// ~35 % of a VIP connect4.
pub const SOCKS_MAP: &str = "L4LB_SOCKS";
/// The balancing policy ([`crate::LbConfig`], index 0), written by the agent.
pub const LB_CONFIG_MAP: &str = "L4LB_LB_CONFIG";
/// Per-CPU [`crate::Stats`] per (service, backend) ([`crate::MemberKey`]):
/// connects, sendmsgs and XDP flows as one VIP sent them to one backend (a
/// backend shared by two VIPs counts each VIP's separately). Entries are made
/// by the programs on the pair's first event and removed by the agent with
/// the member, so the map costs nothing for pairs that never carried traffic.
pub const MEMBER_STATS_MAP: &str = "L4LB_MEMBER_STATS";
/// Backend id → [`crate::ProbeMark`] (array): the agent's probes of backends
/// down for this node and the episode a probe revived; written by the agent
/// only, read by connect4/6 and XDP with `L4LB_HEALTH` (`crate::probe`).
pub const PROBES_MAP: &str = "L4LB_PROBES";
/// The `sock_ops` program (`l4lb-ebpf/src/sock_ops.rs`).
pub const SOCK_OPS_PROGRAM: &str = "l4lb_sockops";
/// The `cgroup/sock_release` program (`l4lb-ebpf/src/sock_release.rs`).
pub const SOCK_RELEASE_PROGRAM: &str = "l4lb_release";
/// Service id → [`crate::LocalSet`] (hash): the backends local to this node
/// (`--locality`), written by the agent, read by connect4/6 under p2c.
pub const LOCAL_MAP: &str = "L4LB_LOCAL";

/// Per-CPU counters (`u64`, indexed by `ICMP_*`) of ICMP errors about VIP
/// flows (`l4lb-ebpf/src/icmp.rs`).
pub const ICMP_STATS_MAP: &str = "L4LB_ICMP_STATS";
/// An error about a client → backend packet, shown to the client as about its VIP flow (tc).
pub const ICMP_TO_CLIENT: u32 = 0;
/// An error to a VIP about a reply, sent on to the flow's backend (XDP).
pub const ICMP_TO_BACKEND: u32 = 1;
/// An error to a VIP about no tracked flow: dropped (XDP).
pub const ICMP_NO_FLOW: u32 = 2;
/// Over [`ICMP_PER_CPU_PER_SEC`]: passed untranslated (tc) or dropped (XDP).
pub const ICMP_RATE_LIMITED: u32 = 3;
/// Names of the [`ICMP_STATS_MAP`] slots, by index.
pub const ICMP_COUNTERS: [&str; 4] = ["to_client", "to_backend", "no_flow", "rate_limited"];
/// ICMP errors translated per CPU per second at most (each direction shares it).
pub const ICMP_PER_CPU_PER_SEC: u64 = 1000;

/// Every map the agent pins, in the order `teardown` and the CLI walk them.
pub const ALL_MAPS: [&str; 25] = [
    SERVICES_MAP,
    SLOTS_MAP,
    BACKENDS_MAP,
    MEMBERS_MAP,
    REVNAT_MAP,
    SERVICE_STATS_MAP,
    BACKEND_STATS_MAP,
    CONNTRACK_MAP,
    CONNTRACK4_MAP,
    crate::CT_STATS_MAP,
    XDP_REVNAT_MAP,
    SELF_MAP,
    VIP_ADDRS_MAP,
    VIP_GUARD_MAP,
    HEALTH_MAP,
    SOCKS_MAP,
    LB_CONFIG_MAP,
    MEMBER_STATS_MAP,
    crate::MONITOR_MAP,
    crate::MONITOR_CONFIG_MAP,
    LOCAL_MAP,
    PROBES_MAP,
    ICMP_STATS_MAP,
    crate::SVC_GEN_MAP,
    crate::VIP_FILTER_MAP,
];

/// Maps an earlier layout pinned and this one does not (their names, since
/// layout version 12: the p2c and locality counters are parts of
/// `L4LB_SVC_STATS` now). `teardown` removes them too: the teardown a
/// layout change asks for must leave no pinned map behind.
pub const RETIRED_MAPS: [&str; 2] = ["L4LB_LB_STATS", "L4LB_LOCAL_STATS"];

/// The XDP ingress program (function name in `l4lb-ebpf/src/xdp.rs`); pinned
/// as `<pin-root>/<name>` so `l4lb-agent explain` can run the loaded one.
pub const XDP_PROGRAM: &str = "l4lb_xdp";
/// The tc (clsact) reply program in `l4lb-ebpf/src/tc.rs`.
pub const TC_REPLY_PROGRAM: &str = "l4lb_tc_reply";

/// Maximum number of services (one per VIP addr+port+proto). Also the size of
/// the per-service counter array, so service ids are `< MAX_SERVICES`.
pub const MAX_SERVICES: u32 = 65_536;
/// Maximum number of distinct backends (addr+port). Backend ids are `1..MAX_BACKENDS`.
pub const MAX_BACKENDS: u32 = 65_536;
/// Slots in the array shared by all services (8 bytes each in the kernel's
/// layout, preallocated: 8 MiB). A service takes M slots (251 for 1–2
/// backends, 503 up to 5, …), twice while its table is being replaced: room
/// for ~2,000 typical services. `--max-slots` resizes it.
pub const MAX_SLOTS: u32 = 1_048_576;
/// Largest Maglev table of one service (Katran's default size).
pub const MAX_SLOTS_PER_SERVICE: u32 = 65_537;
/// Service ↔ backend memberships.
pub const MAX_MEMBERS: u32 = 262_144;
/// UDP reverse-NAT entries (LRU: the oldest sockets' entries are evicted).
pub const MAX_REVNAT: u32 = 131_072;
/// XDP connection-table entries (IPv6: LRU, the least recently used flows
/// are forgotten first; IPv4: slots, the least recently seen of a flow's
/// range is taken, counted; a forgotten flow is re-picked by Maglev, which
/// sends it to the same backend unless the set changed meanwhile).
pub const MAX_FLOWS: u32 = 131_072;
/// Socket mark slots (array; a power of two): connections through a VIP
/// alive at once whose handshakes and lives `sock_ops` can follow.
pub const MAX_SOCKS: u32 = 131_072;
/// Slots a socket's mark may take, from `cookie % MAX_SOCKS` on: a new mark
/// takes the first free one (or one left by a connect that never sent its
/// SYN, after [`SOCK_STALE_NS`]); none → that connection goes unobserved.
pub const SOCK_PROBE_SLOTS: u32 = 8;
/// A mark whose SYN has not left after this long belongs to a connect that
/// failed before it (no route, no local port): its slot may be taken.
pub const SOCK_STALE_NS: u64 = 1_000_000_000;
/// Largest weight a backend may have; 0 = no new connections.
pub const MAX_WEIGHT: u32 = 100;

/// XDP settings the agent writes at start (one `u32` of `XDP_F_*` flags at
/// index 0). Not pinned: it belongs to the loaded program.
pub const XDP_CONFIG_MAP: &str = "L4LB_XDP_CONFIG";
/// Forward rewritten packets from XDP (`bpf_fib_lookup` + XDP_REDIRECT/XDP_TX)
/// instead of passing them to the kernel's forwarding (`--xdp-forward fib`).
pub const XDP_F_FIB: u32 = 1;
/// L2 direct server return (`--xdp-dsr l2`): a packet whose backend listens
/// on the VIP's port keeps its IP header and goes to the backend's MAC.
pub const XDP_F_DSR_L2: u32 = 2;

/// One-entry array the agent pins next to the maps: index 0 holds an
/// [`crate::AbiRecord`], the map layout version the pinned maps were created
/// with. Created from user space (no program uses it); its own layout never changes.
pub const META_MAP: &str = "L4LB_META";
/// The version pinned maps without an `L4LB_META` record have: agents before
/// the record existed wrote this layout.
pub const UNRECORDED_ABI_VERSION: u32 = 3;

/// The benchmark sender's frame headers (Ethernet 14 + IPv4 20 + UDP 8),
/// which `l4lb_pktgen` writes over every frame and the agent builds.
pub const PKTGEN_HEAD_LEN: usize = 14 + 20 + 8;

/// The tc ingress program (function name in `l4lb-ebpf/src/tc_in.rs`): the
/// XDP program's balancing on the skb, for interfaces with tx checksum
/// offload; pinned next to the XDP program.
pub const TC_INGRESS_PROGRAM: &str = "l4lb_tc_ingress";
