//! The only module that touches aya: loads the kernel programs, pins the maps,
//! attaches the socket hooks to a cgroup, executes plans and reads the maps back.
//! The packet programs (XDP ingress, tc reply) live in the `xdp` submodule.
pub mod abi;
mod ahead;
mod backends_array;
mod batch;
mod chunk;
mod cpu_counters;
pub mod ct_seed;
pub mod dsr;
pub mod escape;
pub mod fast_path;
pub mod health;
mod health_runs;
mod id_bits;
mod link_sys;
pub mod links;
mod locality;
mod member_stats;
mod mmap;
pub mod monitor;
pub mod offload;
pub mod pin_root;
pub mod pktgen;
pub mod probe_maps;
pub mod self_exempt;
mod slots_array;
pub mod vip_addrs;
pub mod xdp;

use std::{
    fs::{self, File},
    os::{fd::AsFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, Map, MapData, PerCpuValues},
};
use l4lb_common::{
    ALL_MAPS, BACKEND_STATS_MAP, BACKENDS_MAP, MEMBERS_MAP, MemberKey, MemberValue, REVNAT_MAP,
    RevNatKey, RevNatValue, SERVICE_STATS_MAP, SERVICES_MAP, SLOTS_MAP, ServiceKey, ServiceValue,
    Stats,
};

pub use links::LINKS_DIR;

use crate::{
    codec,
    plan::{Applied, AppliedService, Op},
};

/// The compiled kernel programs (built by build.rs with Debian's rustc-web).
pub(crate) static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/l4lb.bpf.o"));

/// `object`, or an error saying how to get it when build.rs found no eBPF
/// toolchain and embedded an empty one.
pub(crate) fn built_object(object: &'static [u8]) -> Result<&'static [u8]> {
    if object.is_empty() {
        bail!(
            "this l4lb-agent was built without its kernel programs (the eBPF toolchain was \
             missing at build time): run `cargo xtask setup` as root, then build again"
        );
    }
    Ok(object)
}

/// The cgroup programs, by name: the socket hooks (the function names in
/// l4lb-ebpf/src/sock_addr.rs), the handshake observer (sock_ops.rs) and the
/// end of a marked socket (sock_release.rs).
pub const SOCK_PROGRAMS: [&str; 10] = [
    "l4lb_connect4",
    "l4lb_connect6",
    "l4lb_sendmsg4",
    "l4lb_sendmsg6",
    "l4lb_recvmsg4",
    "l4lb_recvmsg6",
    "l4lb_peername4",
    "l4lb_peername6",
    l4lb_common::SOCK_OPS_PROGRAM,
    l4lb_common::SOCK_RELEASE_PROGRAM,
];

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/l4lb";

/// Typed handles on the maps the agent writes.
pub struct Maps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    slots: slots_array::SlotsArray,
    backends: backends_array::BackendsArray,
    members: HashMap<MapData, MemberKey, MemberValue>,
    /// Each service's record: its traffic, p2c and locality counters.
    svc_stats: cpu_counters::CpuCounters<l4lb_common::ServiceStats>,
    be_stats: cpu_counters::CpuCounters<Stats>,
    /// Written by the hooks; the agent only reads it (stale UDP sockets, `sockdestroy`).
    revnat: HashMap<MapData, RevNatKey, RevNatValue>,
    /// Second handles on the members and services maps for batch writes
    /// (aya's typed maps do not lend their fds).
    members_fd: std::os::fd::OwnedFd,
    services_fd: std::os::fd::OwnedFd,
    /// Batch writes work here (cleared on the first EINVAL/ENOTSUP).
    batches: bool,
    /// Counter slots known to be zero: in counter maps this agent created,
    /// every id it has not handed out yet. Resetting those is skipped (a
    /// full sync of 10,000 services saves 60,000 per-CPU writes).
    zero_stats: Option<ZeroStats>,
    /// VIP addresses XDP guards, kept equal to the services map.
    vip_addrs: vip_addrs::VipAddrs,
    /// Service generations for XDP's established path, written before each
    /// service value; None under an older agent's pin root.
    svc_gens: Option<fast_path::SvcGens>,
    vip_guard: vip_addrs::SlotCounters,
    /// None: maps pinned by an agent without ICMP translation.
    icmp: Option<vip_addrs::SlotCounters>,
    /// None: maps pinned by an agent whose IPv4 connection table was a hash.
    conntrack: Option<vip_addrs::SlotCounters>,
    /// Per-backend health and p2c counters; None under a pin root of an
    /// agent that predates them (the CLI still reads the rest).
    health: Option<health::HealthMaps>,
    /// Per-(service, backend) counters; None under an older agent's pin root.
    member_stats: Option<member_stats::MemberStats>,
    /// Per-service local sets and their counters (`--locality`); None under
    /// a pin root of an agent that predates them.
    local: Option<locality::LocalMaps>,
}

/// Ids whose counters were reset or may have counted since the maps were created.
struct ZeroStats {
    services: id_bits::IdBits,
    backends: id_bits::IdBits,
}

/// A failed map write: which op, and why (a full map, most likely).
#[derive(Debug, thiserror::Error)]
#[error("map write {index} ({op:?}) failed: {source}")]
pub struct ApplyError {
    pub index: usize,
    pub op: Box<Op>,
    #[source]
    pub source: aya::maps::MapError,
}

fn nr_cpus() -> Result<usize> {
    aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))
}

impl Maps {
    /// Opens the maps pinned under `pin_root` (e.g. for the CLI, agent running or not).
    pub fn open_pinned(pin_root: &Path) -> Result<Maps> {
        let open = |name: &str| -> Result<Map> {
            let path = pin_root.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!(
                    "opening pinned map {} (is the agent installed with --pin-root {}?)",
                    path.display(),
                    pin_root.display()
                )
            })?;
            Map::from_map_data(data).with_context(|| format!("map {}", path.display()))
        };
        Self::from_maps(open)
    }

    /// `created`: the counter maps were created by this load (not adopted
    /// from pins), so all their slots are zero.
    fn from_ebpf(ebpf: &mut Ebpf, created: bool) -> Result<Maps> {
        let mut maps = Self::from_maps(|name| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the BPF object"))
        })?;
        if created {
            let cap = maps.capacity();
            maps.zero_stats = Some(ZeroStats {
                services: id_bits::IdBits::below(cap.services),
                backends: id_bits::IdBits::below(cap.backends),
            });
        }
        if let Err(e) = maps.sweep_member_stats() {
            // Stale counters are only extra series: never a reason not to load.
            tracing::warn!("per-(VIP, backend) counters not swept: {e:#}");
        }
        maps.vip_addrs
            .sync(&maps.services)
            .context("syncing the VIP address map")?;
        if let Some(g) = maps.svc_gens.as_mut() {
            g.sync(&maps.services)
                .context("syncing the service generations")?;
        }
        Ok(maps)
    }

    /// Drops the counters of pairs that are no longer members (a connect
    /// racing a member's removal can recreate its entry just after it).
    fn sweep_member_stats(&mut self) -> Result<()> {
        if self.member_stats.is_none() {
            return Ok(());
        }
        let members: Vec<MemberKey> = self.member_entries()?.into_iter().map(|(k, _)| k).collect();
        let cpus = nr_cpus()?;
        let dropped = self
            .member_stats
            .as_mut()
            .map_or(0, |m| m.sweep(members, cpus));
        if dropped > 0 {
            tracing::info!(
                dropped,
                "per-(VIP, backend) counters of former members removed"
            );
        }
        Ok(())
    }

    fn from_maps(mut get: impl FnMut(&str) -> Result<Map>) -> Result<Maps> {
        let backends = get(BACKENDS_MAP)?;
        let members = get(MEMBERS_MAP)?;
        let services = get(SERVICES_MAP)?;
        let health = (|| -> Result<health::HealthMaps> {
            Ok(health::HealthMaps {
                health: get(l4lb_common::HEALTH_MAP)?.try_into()?,
                config: get(l4lb_common::LB_CONFIG_MAP)?.try_into()?,
                probes: get(l4lb_common::PROBES_MAP)
                    .ok()
                    .and_then(|m| m.try_into().ok()),
            })
        })()
        .ok();
        let member_stats = get(l4lb_common::MEMBER_STATS_MAP)
            .and_then(member_stats::MemberStats::new)
            .ok();
        let local = get(l4lb_common::LOCAL_MAP)
            .and_then(|m| {
                Ok(locality::LocalMaps {
                    sets: m.try_into()?,
                })
            })
            .ok();
        Ok(Maps {
            health,
            member_stats,
            local,
            members_fd: map_fd(&members)?,
            services_fd: map_fd(&services)?,
            batches: true,
            services: services.try_into()?,
            slots: slots_array::SlotsArray::new(get(SLOTS_MAP)?)?,
            backends: backends_array::BackendsArray::new(backends)?,
            members: members.try_into()?,
            svc_stats: cpu_counters::CpuCounters::new(
                get(SERVICE_STATS_MAP)?,
                SERVICE_STATS_MAP,
                nr_cpus()?,
            )?,
            be_stats: cpu_counters::CpuCounters::new(
                get(BACKEND_STATS_MAP)?,
                BACKEND_STATS_MAP,
                nr_cpus()?,
            )?,
            revnat: get(REVNAT_MAP)?.try_into()?,
            zero_stats: None,
            vip_addrs: {
                let map = get(l4lb_common::VIP_ADDRS_MAP)?;
                let fd = map_fd(&map)?;
                let filter = fast_path::VipFilter::new(get(l4lb_common::VIP_FILTER_MAP)?)?;
                vip_addrs::VipAddrs::new(map, fd, filter)?
            },
            svc_gens: get(l4lb_common::SVC_GEN_MAP)
                .ok()
                .and_then(|m| fast_path::SvcGens::new(m).ok()),
            vip_guard: vip_addrs::SlotCounters::new(
                get(l4lb_common::VIP_GUARD_MAP)?,
                &l4lb_common::GUARD_REASONS,
            )?,
            icmp: get(l4lb_common::ICMP_STATS_MAP)
                .ok()
                .and_then(|m| vip_addrs::SlotCounters::new(m, &l4lb_common::ICMP_COUNTERS).ok()),
            conntrack: get(l4lb_common::CT_STATS_MAP)
                .ok()
                .and_then(|m| vip_addrs::SlotCounters::new(m, &l4lb_common::CT_COUNTERS).ok()),
        })
    }

    /// Runs the ops in order; stops at the first failure. A run of backend
    /// or member puts is one batch write (same order, same result); a run of
    /// services' groups is written kind by kind (`chunk.rs`), each service's
    /// own order kept, the tables and members of the next chunks filled and
    /// written meanwhile on another thread (`ahead.rs`).
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), ApplyError> {
        let ranges = chunk::ranges(ops);
        let chunks: Vec<chunk::Chunk<'_>> = ranges
            .iter()
            .map(|(at, n)| chunk::split(&ops[*at..at + n], *at))
            .collect();
        let fail = |index: usize, source| ApplyError {
            index,
            op: Box::new(ops[index].clone()),
            source,
        };
        let preparer = match chunks.is_empty() {
            true => None,
            false => Some(self.preparer().map_err(|e| fail(ranges[0].0, e))?),
        };
        let board = ahead::Board::new(chunks.len());
        // What comes before the first chunk (its new backends) is written
        // before any of its tables: the plan's order, kept literally.
        let first = ranges.first().map_or(ops.len(), |(at, _)| *at);
        self.apply_with(ops, 0..first, &ranges, &chunks, &board, None)
            .map_err(|(at, source)| fail(at, source))?;
        std::thread::scope(|s| {
            if let (Some(p), true) = (preparer.as_ref(), chunks.len() > 1) {
                s.spawn(|| board.help(p, &chunks));
            }
            let all = first..ops.len();
            let r = self.apply_with(ops, all, &ranges, &chunks, &board, preparer.as_ref());
            board.stop();
            r.map_err(|(at, source)| fail(at, source))
        })
    }

    /// The fds a chunk's tables and members are written through.
    fn preparer(&self) -> Result<ahead::Preparer, aya::maps::MapError> {
        let members = self.members_fd.try_clone().map_err(|io_error| {
            aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "dup",
                io_error,
            })
        })?;
        Ok(ahead::Preparer {
            slots: self.slots.filler()?,
            members,
            batches: std::sync::atomic::AtomicBool::new(self.batches),
        })
    }

    /// [`apply`](Self::apply) of `ops[todo]`, with the chunks found
    /// (`ranges`, split as `chunks`) taken from `board`. Errs with the plan
    /// index that failed.
    fn apply_with(
        &mut self,
        ops: &[Op],
        todo: std::ops::Range<usize>,
        ranges: &[(usize, usize)],
        chunks: &[chunk::Chunk<'_>],
        board: &ahead::Board,
        preparer: Option<&ahead::Preparer>,
    ) -> Result<(), (usize, aya::maps::MapError)> {
        let mut next = ranges.iter().copied().enumerate().peekable();
        let mut i = todo.start;
        while i < todo.end {
            if let Some((k, (_, n))) = next.next_if(|(_, (at, _))| *at == i) {
                let p = preparer.expect("made when there are chunks");
                let members = board.take(k, p, &chunks[k])?;
                self.apply_chunk(&chunks[k], members)?;
                i += n;
                continue;
            }
            let run: Vec<(usize, &Op)> = ops[i..]
                .iter()
                .take(todo.end - i)
                .take_while(|o| batch_kind(o).is_some() && batch_kind(o) == batch_kind(&ops[i]))
                .enumerate()
                .map(|(k, o)| (i + k, o))
                .collect();
            if run.len() > 1 {
                self.put_many(&run)?;
                i += run.len();
                continue;
            }
            self.apply_one(&ops[i]).map_err(|source| (i, source))?;
            i += 1;
        }
        Ok(())
    }

    /// `ops`: all PutMember or all PutService (the
    /// services' address map is then for [`after_puts`](Self::after_puts)).
    fn put_batch(&self, ops: &[&Op]) -> Result<(), (usize, std::io::Error)> {
        match ops[0] {
            Op::PutService(..) => {
                let (keys, values): (Vec<ServiceKey>, Vec<ServiceValue>) = ops
                    .iter()
                    .filter_map(|o| match o {
                        Op::PutService(k, v) => Some((*k, *v)),
                        _ => None,
                    })
                    .unzip();
                batch::update(self.services_fd.as_fd(), &keys, &values)
            }
            _ => {
                let (keys, values) = chunk::member_batch(ops.iter().copied());
                batch::update(self.members_fd.as_fd(), &keys, &values)
            }
        }
    }

    /// What precedes a batch of service puts (their generations, their
    /// addresses in the VIP pre-filter).
    fn before_puts(&mut self, ops: &[&Op]) -> Result<(), aya::maps::MapError> {
        for op in ops {
            if let Op::PutService(k, v) = op {
                self.before_put(k, v)?;
            }
        }
        Ok(())
    }

    /// What precedes one service put: its generation, then its address in
    /// the VIP pre-filter, so no hook reads the service before either.
    fn before_put(&mut self, k: &ServiceKey, v: &ServiceValue) -> Result<(), aya::maps::MapError> {
        if let Some(g) = self.svc_gens.as_mut() {
            g.put(v)?;
        }
        self.vip_addrs.announce(&k.addr);
        Ok(())
    }

    /// What follows service puts that succeeded (the VIP address map, in
    /// one batch).
    fn after_puts(&mut self, ops: &[&Op]) -> Result<(), aya::maps::MapError> {
        let keys: Vec<ServiceKey> = ops
            .iter()
            .filter_map(|o| match o {
                Op::PutService(k, _) => Some(*k),
                _ => None,
            })
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.vip_addrs.added_all(&keys, &self.services)
    }

    fn apply_one(&mut self, op: &Op) -> Result<(), aya::maps::MapError> {
        match op {
            Op::PutBackend(id, b) => self.backends.put(*id, b),
            Op::WriteSlots { base, table } => self.slots.write(*base, &table.fill()),
            Op::PutMember(k, w) => self.members.insert(
                k,
                MemberValue {
                    weight: *w,
                    _pad: 0,
                },
                0,
            ),
            Op::PutService(k, v) => {
                self.before_put(k, v)?;
                self.services.insert(k, v, 0)?;
                self.vip_addrs.added(k, &self.services)
            }
            Op::DelMember(k) => {
                ignore_missing(self.members.remove(k))?;
                match self.member_stats.as_mut() {
                    Some(m) => m.remove(k),
                    None => Ok(()),
                }
            }
            Op::DelService(k) => {
                if let (Some(g), Ok(v)) = (self.svc_gens.as_mut(), self.services.get(k, 0)) {
                    g.remove(v.id)?;
                }
                ignore_missing(self.services.remove(k))?;
                self.vip_addrs.removed(k, &self.services)
            }
            Op::DelBackend(id) => self.backends.remove(*id),
            Op::ResetServiceStats(id) => {
                if self
                    .zero_stats
                    .as_mut()
                    .is_some_and(|z| z.services.insert(*id))
                {
                    return Ok(()); // first use of the id in maps we created
                }
                // One record: the traffic, p2c and locality counters together.
                self.svc_stats.reset(*id)
            }
            Op::ResetBackendStats(id) => {
                if self
                    .zero_stats
                    .as_mut()
                    .is_some_and(|z| z.backends.insert(*id))
                {
                    return Ok(());
                }
                // A new backend starts with no history (the id's previous
                // backend's connections may still close: the kernel never
                // takes a count below zero).
                if let Some(h) = self.health.as_mut() {
                    h.reset_backend(*id)?;
                }
                self.be_stats.reset(*id)
            }
        }
    }

    /// What the maps hold now, in the planner's terms.
    pub fn read_applied(&self) -> Result<Applied> {
        let mut applied = Applied::default();
        let mut by_id = std::collections::BTreeMap::new();
        for (key, value) in self.service_entries()? {
            let Some(vip) = codec::vip(&key) else {
                continue;
            };
            by_id.insert(value.id, vip);
            applied.services.insert(
                vip,
                AppliedService {
                    id: value.id,
                    revision: value.revision,
                    slot_base: value.slot_base,
                    slot_count: value.slot_count,
                    backends: value.backends,
                    ..Default::default()
                },
            );
        }
        // Gathered per service first: the hash map's order is no member
        // order, and a sorted slice built one insert at a time would copy
        // itself per member.
        let mut members: std::collections::BTreeMap<u32, Vec<(u32, u32)>> = Default::default();
        for (key, value) in self.member_entries()? {
            if by_id.contains_key(&key.service_id) {
                let of = members.entry(key.service_id).or_default();
                of.push((key.backend_id, value.weight));
            } else {
                applied
                    .orphan_members
                    .insert((key.service_id, key.backend_id));
            }
        }
        for (service_id, of) in members {
            if let Some(svc) = by_id
                .get(&service_id)
                .and_then(|vip| applied.services.get_mut(vip))
            {
                svc.members = of.into_iter().collect();
            }
        }
        self.backends
            .for_each(|id, b| {
                applied.backends.insert(id, codec::backend_addr(&b));
            })
            .context("reading the backends array")?;
        Ok(applied)
    }

    /// Every entry of the services map.
    fn service_entries(&self) -> Result<Vec<(ServiceKey, ServiceValue)>> {
        hash_entries(self.services_fd.as_fd(), &self.services).context("reading the services map")
    }

    /// Every entry of the members map.
    fn member_entries(&self) -> Result<Vec<(MemberKey, MemberValue)>> {
        hash_entries(self.members_fd.as_fd(), &self.members).context("reading the members map")
    }

    /// What the maps hold, each service's slots checked against its members
    /// (`adopt.rs`): the inconsistent ones are marked stale.
    pub fn read_checked(&self) -> Result<(Applied, Vec<crate::adopt::Problem>)> {
        let mut applied = self.read_applied()?;
        let problems = crate::adopt::check(&mut applied, self.slots.capacity(), |base, n| {
            Ok(self.slots.read(base, n)?)
        });
        Ok((applied, problems))
    }

    /// The maps' sizes (what plans allocate ids and tables from).
    pub fn capacity(&self) -> crate::plan::Capacity {
        use aya::maps::IterableMap as _;
        let cap = |m: &MapData, default: u32| m.info().map(|i| i.max_entries()).unwrap_or(default);
        crate::plan::Capacity {
            services: cap(self.services.map(), l4lb_common::MAX_SERVICES),
            backends: self.backends.capacity(),
            slots: self.slots.capacity(),
        }
    }

    /// The active backend-set size of a service as the kernel sees it.
    pub fn service_value(&self, vip: &crate::model::Vip) -> Option<ServiceValue> {
        self.services.get(&codec::service_key(vip), 0).ok()
    }

    /// (map name, entries, capacity) for every map the agent writes: how close
    /// each is to full. Counting walks the keys; fine at scrape intervals. A
    /// map that cannot be read is left out (not shown as empty).
    pub fn usage(&self) -> Vec<(&'static str, u64, u64)> {
        use aya::maps::IterableMap as _;
        fn cap(m: &MapData) -> u64 {
            m.info().map(|i| u64::from(i.max_entries())).unwrap_or(0)
        }
        let backends = match self.backends.count() {
            Ok(n) => Some((BACKENDS_MAP, n, u64::from(self.backends.capacity()))),
            Err(e) => {
                tracing::debug!("{BACKENDS_MAP} not counted: {e}");
                None
            }
        };
        let mut rows = Vec::new();
        match self.service_entries() {
            Ok(services) => {
                let slots = services.iter().map(|(_, v)| u64::from(v.slot_count)).sum();
                rows.push((
                    SERVICES_MAP,
                    services.len() as u64,
                    cap(self.services.map()),
                ));
                rows.push((SLOTS_MAP, slots, cap(self.slots.map())));
            }
            Err(e) => tracing::debug!("{SERVICES_MAP} not counted: {e:#}"),
        }
        rows.extend(backends);
        match self.member_entries() {
            Ok(m) => rows.push((MEMBERS_MAP, m.len() as u64, cap(self.members.map()))),
            Err(e) => tracing::debug!("{MEMBERS_MAP} not counted: {e:#}"),
        }
        rows
    }

    /// The VIP a socket (by cookie) was connected or sent through to reach
    /// `backend`, from the hooks' reverse-NAT entry; None if it never went
    /// through a VIP to that backend (or the LRU evicted the entry).
    pub fn revnat_vip(
        &self,
        cookie: u64,
        backend: std::net::SocketAddr,
    ) -> Option<std::net::SocketAddr> {
        let key = RevNatKey {
            cookie,
            addr: codec::addr6(backend.ip()),
            port: backend.port().to_be(),
            _pad: [0; 6],
        };
        let v = self.revnat.get(&key, 0).ok()?;
        Some(std::net::SocketAddr::new(
            codec::ip(&v.addr),
            u16::from_be(v.port),
        ))
    }

    /// The VIP addresses XDP guards (address, services on it).
    pub fn vip_addrs(&self) -> Vec<(l4lb_common::Addr6, u32)> {
        self.vip_addrs.addrs()
    }

    /// Packets to a VIP address XDP dropped unparsed, per reason.
    pub fn vip_guard_drops(&self) -> Vec<(&'static str, u64)> {
        self.vip_guard.read()
    }

    /// ICMP errors about VIP flows, by `ICMP_COUNTERS` name (empty: no map).
    pub fn icmp_errors(&self) -> Vec<(&'static str, u64)> {
        self.icmp.as_ref().map(|c| c.read()).unwrap_or_default()
    }

    /// IPv4 flows the connection table could not keep, by `CT_COUNTERS`
    /// name (empty: no map).
    pub fn conntrack_losses(&self) -> Vec<(&'static str, u64)> {
        self.conntrack
            .as_ref()
            .map(|c| c.read())
            .unwrap_or_default()
    }

    pub fn service_stats(&self, id: u32) -> Stats {
        self.service_record(id).stats
    }

    /// A service's counter record summed over CPUs (zero: the id is out of range).
    fn service_record(&self, id: u32) -> l4lb_common::ServiceStats {
        self.svc_stats.sum(id, l4lb_common::ServiceStats::add)
    }

    /// The counter records of services `ids` (ascending), read in runs.
    pub fn service_records(&self, ids: &[u32], f: impl FnMut(u32, l4lb_common::ServiceStats)) {
        self.svc_stats.sums(ids, l4lb_common::ServiceStats::add, f);
    }

    /// The counters of backends `ids` (ascending), read in runs.
    pub fn backend_stats_of(&self, ids: &[u32], f: impl FnMut(u32, Stats)) {
        self.be_stats.sums(ids, Stats::add, f);
    }

    /// Every (service, backend) pair's counters, read in batches; None
    /// when the pinned maps predate them or this kernel cannot batch the
    /// read ([`Self::member_stats`] reads one pair).
    pub fn all_member_stats(&self) -> Option<std::collections::HashMap<MemberKey, Stats>> {
        self.member_stats.as_ref()?.all(nr_cpus().ok()?)
    }

    pub fn backend_stats(&self, id: u32) -> Stats {
        self.be_stats.sum(id, Stats::add)
    }

    /// What one VIP sent one backend; None when the pinned maps predate
    /// per-pair counters.
    pub fn member_stats(&self, service_id: u32, backend_id: u32) -> Option<Stats> {
        Some(self.member_stats.as_ref()?.get(service_id, backend_id))
    }

    /// What this node saw of a backend's handshakes (None: no health map here).
    pub fn backend_health(&self, id: u32) -> Option<l4lb_common::BackendHealth> {
        self.health.as_ref()?.health.get(&id, 0).ok()
    }

    /// A backend's health as the CLI shows it: the kernel's entry, the
    /// agent's probe mark and the probe mode (None: no health map here).
    pub fn health_view(&self, id: u32, now_ns: u64) -> Option<health::HealthView> {
        let h = self.backend_health(id)?;
        let mark = self.backend_probe(id).unwrap_or_default();
        Some(health::HealthView::new(
            &h,
            &mark,
            self.health_probes().unwrap_or_default(),
            now_ns,
        ))
    }

    /// The agent's probe mark of a backend (None: no probe map here).
    pub fn backend_probe(&self, id: u32) -> Option<l4lb_common::ProbeMark> {
        self.health.as_ref()?.probes.as_ref()?.get(&id, 0).ok()
    }

    /// Who probes down backends (None: no config map under this pin root).
    pub fn health_probes(&self) -> Option<health::HealthProbes> {
        let c = self.health.as_ref()?.config.get(&0, 0).ok()?;
        Some(health::HealthProbes::from_raw(u32::from(c.probes)))
    }

    /// The policy the hooks follow (None: no config map under this pin root).
    pub fn lb_policy(&self) -> Option<health::LbPolicy> {
        let c = self.health.as_ref()?.config.get(&0, 0).ok()?;
        Some(health::LbPolicy::from_raw(c.policy))
    }

    /// The backend ids in a service's active Maglev table, slot by slot.
    pub fn service_slots(&self, svc: &ServiceValue) -> Result<Vec<u32>> {
        Ok(self.slots.read(svc.slot_base, svc.slot_count)?)
    }
}

/// Every entry of a hash map: in batches of [`READ_BATCH`], or key by key
/// where this kernel has no batch lookup. At 10,000 VIPs x 5 backends a
/// walk key by key was ~120,000 bpf() calls per read of the table (every
/// `/metrics` scrape, the CLI, an adoption); batches make it ~60.
fn hash_entries<K: aya::Pod + Default, V: aya::Pod + Default>(
    fd: std::os::fd::BorrowedFd<'_>,
    map: &HashMap<MapData, K, V>,
) -> Result<Vec<(K, V)>> {
    if let Some(all) = batch::lookup_hash(fd, READ_BATCH)? {
        return Ok(all);
    }
    Ok(map.iter().collect::<Result<_, _>>()?)
}

/// Entries per batch of a hash map's read (~60 KB of buffers for members).
const READ_BATCH: usize = 1024;

/// The kernel-internal "operation not supported" some maps return from bpf().
const ENOTSUPP: i32 = 524;

/// EINVAL or ENOTSUP(P) from a kernel without batch updates for a map.
fn no_batch(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOTSUP | ENOTSUPP)
    )
}

/// Which batch a put belongs in (None: not batched).
fn batch_kind(op: &Op) -> Option<u8> {
    match op {
        // Backends are memory stores (`backends_array.rs`): nothing to batch.
        Op::PutMember(..) => Some(1),
        _ => None,
    }
}

/// A second fd on a hash map.
fn map_fd(map: &Map) -> Result<std::os::fd::OwnedFd> {
    let Map::HashMap(data) = map else {
        anyhow::bail!("expected a hash map");
    };
    Ok(std::os::fd::AsFd::as_fd(data.fd()).try_clone_to_owned()?)
}

fn ignore_missing(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        other => other,
    }
}

/// Adds up a per-CPU counter record (`Stats`) with its `add`.
fn sum<T: aya::Pod + Default>(values: Option<PerCpuValues<T>>, add: fn(&mut T, &T)) -> T {
    let mut total = T::default();
    for s in values.iter().flat_map(|v| v.iter()) {
        add(&mut total, s);
    }
    total
}

/// The loaded object. The program links are pinned (see `attach_sock_programs`),
/// so dropping this does not detach them: the datapath outlives the agent.
pub struct Attached {
    _ebpf: Ebpf,
    /// Held for the agent's lifetime (see `pin_root`).
    _lock: std::sync::Arc<pin_root::PinRootLock>,
}

/// What `load` returns: the maps to write, the attachment to keep alive, and
/// the reader of kernel-side log records (if the object logs).
pub struct Loaded {
    pub maps: Maps,
    pub attached: Attached,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// The root of the cgroup v2 hierarchy (where `--cgroup` defaults to).
pub fn cgroup2_root() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })
        .next()
        .context("no cgroup2 filesystem is mounted")
}

/// Creates (or reuses) the pinned maps under `pin_root`, loads the socket
/// hooks and attaches them to `cgroup`, with the default `--lb-policy`.
pub fn load(pin_root: &Path, cgroup: &Path, cap: crate::plan::Capacity) -> Result<Loaded> {
    load_with(pin_root, cgroup, cap, health::LbConfigArgs::default())
}

/// [`load`] with a balancing policy and probe mode, written before any hook is attached.
pub fn load_with(
    pin_root: &Path,
    cgroup: &Path,
    cap: crate::plan::Capacity,
    lb: health::LbConfigArgs,
) -> Result<Loaded> {
    let created = create(pin_root, cgroup, cap, lb)?;
    let attached = created.programs.attach()?;
    Ok(Loaded {
        maps: created.maps,
        attached,
        logger: created.logger,
    })
}

/// The maps made (or reused) and pinned, ready to be written; the programs
/// that read them not yet verified nor attached.
pub struct Created {
    pub maps: Maps,
    pub programs: Programs,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// The object's programs, their map references already resolved to the
/// pinned maps (aya relocates at load), so a write to `Created::maps` before
/// `attach` is what the programs read once attached.
pub struct Programs {
    ebpf: Ebpf,
    lock: std::sync::Arc<pin_root::PinRootLock>,
    cgroup_dir: File,
    cgroup: PathBuf,
    pin_root: PathBuf,
}

impl Programs {
    /// Verifies and loads the socket hooks and attaches them to the cgroup,
    /// then loads and pins the packet programs (their attach is
    /// `Attached::attach_packet`). Blocking: the verifier takes ~1 s.
    pub fn attach(self) -> Result<Attached> {
        self.attach_socket()?.load_packet()
    }

    /// The socket hooks verified, loaded and attached to the cgroup: from
    /// here they serve what the maps hold. The packet programs are next
    /// ([`SocketAttached::load_packet`]), on whatever thread the caller picks.
    pub fn attach_socket(mut self) -> Result<SocketAttached> {
        let t = std::time::Instant::now();
        let links_dir = self.pin_root.join(LINKS_DIR);
        links::attach_sock_programs(&mut self.ebpf, &self.cgroup_dir, &self.cgroup, &links_dir)?;
        Ok(SocketAttached {
            programs: self,
            socket_ms: t.elapsed().as_millis() as u64,
        })
    }
}

/// The socket hooks attached; the packet programs not yet verified.
pub struct SocketAttached {
    programs: Programs,
    socket_ms: u64,
}

impl SocketAttached {
    /// Verifies, loads and pins the packet programs (their attach is
    /// `Attached::attach_packet`).
    pub fn load_packet(mut self) -> Result<Attached> {
        let t = std::time::Instant::now();
        let p = &mut self.programs;
        xdp::load_and_pin(&mut p.ebpf, &p.pin_root)?;
        tracing::info!(
            socket_ms = self.socket_ms,
            packet_ms = t.elapsed().as_millis() as u64,
            "programs verified and loaded"
        );
        Ok(Attached {
            _ebpf: self.programs.ebpf,
            _lock: self.programs.lock,
        })
    }
}

/// Creates (or reuses) the pinned maps and registers the agent in the self
/// map; no program is verified or attached yet (`Programs::attach`).
pub fn create(
    pin_root: &Path,
    cgroup: &Path,
    cap: crate::plan::Capacity,
    lb: health::LbConfigArgs,
) -> Result<Created> {
    if std::env::var_os("L4LB_FORBID_ROOT_CGROUP").is_some() {
        let root = cgroup2_root()?;
        if fs::canonicalize(cgroup).ok() == fs::canonicalize(&root).ok() {
            bail!(
                "refusing to attach to the root cgroup {} (L4LB_FORBID_ROOT_CGROUP is set)",
                root.display()
            );
        }
    }
    let cgroup_dir =
        File::open(cgroup).with_context(|| format!("opening cgroup {}", cgroup.display()))?;
    // Locked first: nothing under the pin root is read or written by two agents.
    let lock = pin_root::create_and_lock(pin_root)?;
    let object = built_object(BPF_OBJECT)?;
    abi::check_and_record(pin_root, object)?;
    let ct_seed = ct_seed::read_or_create(pin_root)?;

    let paths: Vec<(&str, PathBuf)> = ALL_MAPS.iter().map(|n| (*n, pin_root.join(n))).collect();
    // Counter records per id and CPU (unpins a counter map of another size).
    let cpus = nr_cpus()?;
    let svc_records = cpu_counters::records(
        pin_root,
        SERVICE_STATS_MAP,
        SERVICES_MAP,
        cap.services,
        cpus,
    )?;
    let be_records = cpu_counters::records(
        pin_root,
        BACKEND_STATS_MAP,
        BACKENDS_MAP,
        cap.backends,
        cpus,
    )?;
    // Neither counter map pinned yet: this load creates both, zeroed.
    let stats_created = ![SERVICE_STATS_MAP, BACKEND_STATS_MAP]
        .iter()
        .any(|n| pin_root.join(n).exists());
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let members = cap.backends.saturating_mul(4).max(l4lb_common::MAX_MEMBERS);
    // Sizes from the flags (maps already pinned keep the size they have).
    // Counter arrays are indexed by id and CPU, so they follow their id space.
    loader
        .map_max_entries(SERVICES_MAP, cap.services)
        .map_max_entries(SERVICE_STATS_MAP, svc_records)
        .map_max_entries(BACKENDS_MAP, cap.backends)
        .map_max_entries(BACKEND_STATS_MAP, be_records)
        .map_max_entries(MEMBERS_MAP, members)
        .map_max_entries(l4lb_common::MEMBER_STATS_MAP, members)
        .map_max_entries(l4lb_common::HEALTH_MAP, cap.backends)
        .map_max_entries(l4lb_common::LOCAL_MAP, cap.services)
        .map_max_entries(SLOTS_MAP, cap.slots)
        .map_max_entries(l4lb_common::VIP_ADDRS_MAP, cap.services)
        .map_max_entries(l4lb_common::SVC_GEN_MAP, cap.services);
    let locality_step = u8::from(lb.locality_step);
    loader.override_global("L4LB_LOCALITY_STEP", &locality_step, true);
    // Fixed for a load, so the hooks read them as constants (no map line
    // per connect); `write_config` below keeps the map for the CLI.
    let (policy, probes) = (lb.policy.raw(), lb.probes.raw());
    loader.override_global("L4LB_POLICY", &policy, true);
    loader.override_global("L4LB_PROBES_MODE", &probes, true);
    loader.override_global("L4LB_CT_SEED", &ct_seed, true);
    // The counter arrays' stride per id (`cpu_counters.rs`).
    let nr_cpus = cpus as u32;
    loader.override_global("L4LB_NR_CPUS", &nr_cpus, true);
    // Creates the maps and relocates the programs' references to them;
    // the verifier runs later, in `Programs::attach_socket` and
    // `SocketAttached::load_packet`.
    let mut ebpf = loader.load(object).context("loading the l4lb BPF object")?;
    // Parsed into `ebpf`: the object's bytes are not read again.
    mmap::release_read_only(object);
    for (_, path) in &paths {
        // Pinned maps hold the service table: root only.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("kernel-side logging unavailable: {e}");
            None
        }
    };
    // Before the hooks see any call: the agent's own are never rewritten.
    if !self_exempt::register(pin_root)? {
        bail!(
            "the self map {} was not pinned",
            pin_root.join(l4lb_common::SELF_MAP).display()
        );
    }
    health::write_config(&mut ebpf, lb.policy, lb.probes)?;
    let maps = Maps::from_ebpf(&mut ebpf, stats_created)?;
    Ok(Created {
        maps,
        programs: Programs {
            ebpf,
            lock,
            cgroup_dir,
            cgroup: cgroup.to_path_buf(),
            pin_root: pin_root.to_path_buf(),
        },
        logger,
    })
}

/// Detaches the pinned program links and removes the pinned maps under `pin_root`.
pub fn teardown(pin_root: &Path) -> Result<Vec<PathBuf>> {
    let _lock = pin_root::lock_existing(pin_root)?;
    let mut removed = Vec::new();
    let links_dir = pin_root.join(LINKS_DIR);
    if links_dir.is_dir() {
        for path in links::pinned_links(&links_dir)? {
            // With no pin and no open fd left, the kernel detaches the link.
            fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            removed.push(path);
        }
        let _ = fs::remove_dir(&links_dir);
    }
    for name in ALL_MAPS.iter().chain(&l4lb_common::RETIRED_MAPS) {
        let path = pin_root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    xdp::teardown(pin_root, &mut removed)?;
    // After the connection table it placed.
    let seed = pin_root.join(l4lb_common::CT_SEED_MAP);
    if fs::remove_file(&seed).is_ok() {
        removed.push(seed);
    }
    // The layout record goes last: maps without it are taken as the old layout.
    let meta = pin_root.join(l4lb_common::META_MAP);
    if fs::remove_file(&meta).is_ok() {
        removed.push(meta);
    }
    // Only remove the directory if nothing else lives there.
    let _ = fs::remove_dir(pin_root);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    /// An agent built before `cargo xtask setup` (empty objects) says what
    /// to run instead of failing inside the ELF parser.
    #[test]
    fn an_empty_object_is_refused_with_the_command_that_fixes_it() {
        let err = super::built_object(&[]).unwrap_err().to_string();
        assert!(err.contains("cargo xtask setup"), "{err}");
        assert_eq!(super::built_object(b"\x7fELF").unwrap(), b"\x7fELF");
        assert!(
            !super::BPF_OBJECT.is_empty(),
            "this build embeds real programs"
        );
    }
}
