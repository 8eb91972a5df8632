//! Parts → groups (one per datapath VIP, named ones before they have an
//! address) → named-VIP allocation → [`Catalog`].
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    ops::Range,
    sync::Arc,
};

use super::{
    AppPart, Keep, ParseError, Parsed, Warning,
    group_view::GroupView,
    labels::Decl,
    part::{HostPort, NamedAgent, PartGroup},
};
use crate::declare::Target;
use crate::model::{Catalog, DesiredState, PackedRecords, Proto, ServiceSpec, TaskRecord, Vip};
use crate::naming::{Family, NamingError, VipAllocator};

/// A datapath VIP before named ones have addresses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum GroupKey {
    Named {
        /// Shared: the kept catalog holds each key in several maps (its
        /// groups, the dirty ones, the wanted names), so a copy is a count.
        key: Arc<str>,
        port: u16,
        proto: Proto,
    },
    Ip(Vip),
}

/// Everything declared for one [`GroupKey`], from any app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Group {
    /// Label values it was declared with; the smallest becomes the name, so
    /// the name does not depend on app order.
    pub(super) labels: BTreeSet<String>,
    /// A named VIP's framework when it is not Marathon's (its DNS name).
    pub(super) framework: Option<String>,
    pub(super) apps: BTreeSet<String>,
    pub(super) backends: BTreeMap<SocketAddr, u32>,
    /// Until [`Builder::resolve_agents`] moves them into `backends`.
    pub(super) by_name: BTreeMap<HostPort, u32>,
}

impl Group {
    /// Joins what the part `app_id` declares for this group: labels and
    /// apps join, a later framework wins, an endpoint keeps its highest
    /// weight.
    pub(super) fn add(&mut self, app_id: &str, pg: &PartGroup) {
        self.labels.extend(pg.labels.iter().cloned());
        if pg.framework.is_some() {
            self.framework.clone_from(&pg.framework);
        }
        if !self.apps.contains(app_id) {
            self.apps.insert(app_id.to_owned());
        }
        for (&a, &w) in &pg.backends {
            let e = self.backends.entry(a).or_insert(w);
            *e = (*e).max(w);
        }
        for (hp, w) in &pg.by_name {
            let e = self.by_name.entry(hp.clone()).or_insert(*w);
            *e = (*e).max(*w);
        }
    }

    /// Families a named VIP needs an address in: its backends'. None when it
    /// has no backend: an app scaled to 0 withdraws its VIP (unlike the
    /// static file, where an empty list is the operator's explicit choice).
    pub(super) fn families(&self) -> Families {
        Families::of(self.backends.keys())
    }
}

/// A set of families in a byte (a B-tree set of them is an allocation per
/// group and per catalog build of it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Families(u8);

impl Families {
    fn bit(f: Family) -> u8 {
        match f {
            Family::V4 => 1,
            Family::V6 => 2,
        }
    }

    /// The families of `addrs`.
    pub(super) fn of<'a>(addrs: impl IntoIterator<Item = &'a SocketAddr>) -> Families {
        let bits = addrs
            .into_iter()
            .fold(0, |bits, a| bits | Self::bit(Family::of(a.ip())));
        Families(bits)
    }

    /// `self` with `f`.
    pub(super) fn with(self, f: Family) -> Families {
        Families(self.0 | Self::bit(f))
    }

    pub(super) fn union(self, other: Families) -> Families {
        Families(self.0 | other.0)
    }

    /// The families in `self` and not in `other`.
    pub(super) fn minus(self, other: Families) -> Families {
        Families(self.0 & !other.0)
    }

    /// In order, V4 first (a B-tree set's order).
    pub(super) fn iter(self) -> impl Iterator<Item = Family> {
        let has = move |f: &Family| self.0 & Self::bit(*f) != 0;
        [Family::V4, Family::V6].into_iter().filter(has)
    }
}

/// What apps and pods declare, gathered per datapath VIP, and their tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Builder {
    /// Whether tasks get records (in `tasks`).
    pub(super) keep: Keep,
    pub(super) groups: BTreeMap<GroupKey, Group>,
    pub(super) tasks: Vec<Arc<TaskRecord>>,
    /// Parts whose records came packed: where they sit in `tasks`, and
    /// their blob when resolving agents cannot change them (no agent known
    /// by name). The catalog carries them packed again.
    pub(super) packed: Vec<(Range<usize>, Option<Arc<PackedRecords>>)>,
    pub(super) named_agents: Vec<NamedAgent>,
    pub(super) warnings: Vec<Warning>,
}

/// The records of parts that came packed, out of `tasks` and packed again
/// (their own blob when nothing changed them), in part order.
fn pack_again(
    tasks: &mut Vec<Arc<TaskRecord>>,
    parts: Vec<(Range<usize>, Option<Arc<PackedRecords>>)>,
) -> Vec<Arc<PackedRecords>> {
    if parts.is_empty() {
        return Vec::new();
    }
    let mut stays = vec![true; tasks.len()];
    let mut out = Vec::with_capacity(parts.len());
    for (range, blob) in parts {
        stays[range.clone()].fill(false);
        out.extend(blob.or_else(|| PackedRecords::pack(&tasks[range]).map(Arc::new)));
    }
    let mut stays = stays.into_iter();
    tasks.retain(|_| stays.next().unwrap_or(true));
    out
}

/// Named-VIP addresses by family, then by name.
pub(super) type Allocated = BTreeMap<Family, BTreeMap<String, IpAddr>>;

impl Builder {
    /// Adds one app's part: same rules as declaring it here (labels and apps
    /// join, an endpoint keeps its highest weight).
    pub(super) fn add_part(&mut self, p: &AppPart) {
        for (k, pg) in &p.groups {
            self.groups.entry(k.clone()).or_default().add(&p.id, pg);
        }
        let offset = self.tasks.len();
        self.tasks.extend(p.tasks.iter().cloned());
        let unpacked = p.packed.as_ref().map(|r| r.unpack_into(&mut self.tasks));
        let records = !matches!(unpacked, Some(Err(_)));
        if let (Some(blob), Some(Ok(()))) = (&p.packed, &unpacked) {
            let same = p.named_agents.iter().all(|n| n.task.is_none());
            let blob = same.then(|| blob.clone());
            self.packed.push((offset..self.tasks.len(), blob));
        }
        self.named_agents
            .extend(p.named_agents.iter().map(|n| NamedAgent {
                task: n.task.filter(|_| records).map(|i| i + offset),
                ..n.clone()
            }));
        self.warnings.extend(p.warnings.iter().cloned());
        if let Some(Err(e)) = unpacked {
            // Packed by us: a bug, not input; the part's services stand.
            self.warnings.push(Warning {
                app_id: Some(p.id.clone()),
                what: format!("{e}; its task records are left out"),
                pod: false,
            });
        }
    }

    /// One declaration of the part being built. Its app is not noted: a
    /// part's groups are its own (`AppPart::from_builder` keeps no apps),
    /// a catalog names the part's id when it joins them (`Group::add`).
    pub(super) fn declare(&mut self, d: &Decl) {
        for &proto in &d.protos {
            let g = self.groups.entry(d.group_key(proto)).or_default();
            g.labels.insert(d.label.clone());
            if d.framework.is_some() {
                g.framework.clone_from(&d.framework);
            }
        }
    }

    /// Adds one task's addresses for one declaration. An IP VIP takes only
    /// its own family (a socket hook cannot change it); a named VIP takes
    /// all and gets an address per family.
    pub(super) fn add_backends(
        &mut self,
        d: &Decl,
        addrs: &[SocketAddr],
        weight: u32,
        at: &dyn Fn() -> String,
        warn: &mut dyn FnMut(String),
    ) {
        let same: Vec<SocketAddr>;
        let addrs: &[SocketAddr] = match &d.target {
            Target::Named { .. } => addrs, // every family: no copy
            Target::Ip(vip) => {
                same = addrs
                    .iter()
                    .copied()
                    .filter(|a| Family::of(a.ip()) == Family::of(vip.ip()))
                    .collect();
                if same.is_empty() {
                    let at = at();
                    for a in addrs {
                        warn(format!(
                            "{}: {at} backend {a} is {} but the VIP {vip} is {}; left out",
                            d.origin,
                            Family::of(a.ip()),
                            Family::of(vip.ip())
                        ));
                    }
                }
                &same
            }
        };
        for &proto in &d.protos {
            let g = self.groups.entry(d.group_key(proto)).or_default();
            for &a in addrs {
                // The same endpoint declared twice (two labels, or a port
                // label and a legacy one): one serving claim is enough.
                let w = g.backends.entry(a).or_insert(weight);
                *w = (*w).max(weight);
            }
        }
    }

    /// A host-port backend on an agent known by name, for every protocol of
    /// the declaration (an IP VIP's family is checked once it resolves).
    pub(super) fn add_named_backend(&mut self, d: &Decl, hp: &HostPort, weight: u32) {
        for &proto in &d.protos {
            let g = self.groups.entry(d.group_key(proto)).or_default();
            let w = g.by_name.entry(hp.clone()).or_insert(weight);
            *w = (*w).max(weight);
        }
    }

    /// The catalog: named VIPs at their allocated addresses, then the IP
    /// VIPs that have backends and do not sit on one of those addresses.
    pub(super) fn finish(self, alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
        let Builder {
            keep: _,
            groups,
            mut tasks,
            packed,
            named_agents,
            mut warnings,
        } = self;
        let packed = pack_again(&mut tasks, packed);
        let addrs = allocate_named(&groups, alloc)?;
        let (mut services, named_at) = named_services(&groups, &addrs);
        for (gk, g) in &groups {
            let GroupKey::Ip(vip) = gk else { continue };
            if g.backends.is_empty() {
                continue; // scaled to 0: withdrawn, like a named VIP
            }
            match named_at.get(vip) {
                Some(key) => warnings.push(squatter(vip, GroupView::Merged(g), key)),
                None => {
                    services.insert(*vip, ip_service(GroupView::Merged(g)));
                }
            }
        }

        tasks.sort_by(|a, b| (&a.app_id, &a.task_id).cmp(&(&b.app_id, &b.task_id)));
        let hosts = named_agents.into_iter().map(|n| n.host).collect();
        Ok(Parsed {
            catalog: Catalog {
                services: DesiredState {
                    services: services.into_iter().collect(),
                },
                tasks,
                packed,
                cluster: None,
            },
            services: None,
            warnings,
            hosts,
        })
    }
}

/// Addresses for the named VIPs, in each family their backends have. Every
/// family every sync, so names that are gone are released.
fn allocate_named(
    groups: &BTreeMap<GroupKey, Group>,
    alloc: &mut VipAllocator,
) -> Result<Allocated, NamingError> {
    let mut keys: BTreeMap<Family, BTreeSet<String>> = BTreeMap::new();
    for (gk, g) in groups {
        if let GroupKey::Named { key, .. } = gk {
            for f in g.families().iter() {
                keys.entry(f).or_default().insert(key.to_string());
            }
        }
    }
    let mut addrs = BTreeMap::new();
    for family in [Family::V4, Family::V6] {
        let wanted = keys.remove(&family).unwrap_or_default();
        addrs.insert(family, alloc.allocate(family, &wanted)?);
    }
    Ok(addrs)
}

/// One VIP per named group and family of its backends, at the address the
/// name got; and which name holds each such VIP.
fn named_services<'g>(
    groups: &'g BTreeMap<GroupKey, Group>,
    addrs: &Allocated,
) -> (BTreeMap<Vip, ServiceSpec>, BTreeMap<Vip, &'g str>) {
    let mut services = BTreeMap::new();
    let mut named_at = BTreeMap::new();
    for (gk, g) in groups {
        let GroupKey::Named { key, port, proto } = gk else {
            continue;
        };
        let g = GroupView::Merged(g);
        for (vip, spec) in named_group_services((&**key, *port, *proto), g, addrs) {
            named_at.insert(vip, &**key);
            services.insert(vip, spec);
        }
    }
    (services, named_at)
}

/// The VIPs of one named group `(key, port, proto)`: one per family of its
/// backends that has an address.
pub(super) fn named_group_services(
    (key, port, proto): (&str, u16, Proto),
    g: GroupView,
    addrs: &Allocated,
) -> Vec<(Vip, ServiceSpec)> {
    let mut out = Vec::new();
    for family in g.families().iter() {
        let Some(&ip) = addrs.get(&family).and_then(|a| a.get(key)) else {
            continue; // allocate() returned every wanted key
        };
        let vip = Vip {
            addr: SocketAddr::new(ip, port),
            proto,
        };
        let backends = g.service_backends(Some(family));
        let spec = ServiceSpec {
            name: g.first_label().cloned(),
            framework: g.framework().clone(),
            origin: g.origin(),
            backends,
        };
        out.push((vip, spec));
    }
    out
}

/// An IP VIP's service (the group has backends, no named VIP holds it).
pub(super) fn ip_service(g: GroupView) -> ServiceSpec {
    ServiceSpec {
        name: None,
        framework: None,
        origin: g.origin(),
        backends: g.service_backends(None),
    }
}

/// An IP VIP at the address allocated to the named VIP `key`: explicit
/// addresses are the user's choice, allocated ones are stable, so the named
/// VIP keeps the address either way and this one is left out.
pub(super) fn squatter(vip: &Vip, g: GroupView, key: &str) -> Warning {
    Warning {
        pod: false,
        app_id: g.first_app().map(str::to_owned),
        what: format!(
            "VIP {vip} ({}) is the address allocated to named VIP {key}; left out",
            g.labels().join(", ")
        ),
    }
}

/// `app /a` or `apps /a, /b`: who declared a VIP, for the guard's warnings.
/// A part whose id is no app path (a Mesos task's) is named as it is.
pub(super) fn origin(apps: &BTreeSet<String>) -> Option<String> {
    if let (1, Some(app)) = (apps.len(), apps.first()) {
        return Some(origin_of_one(app)); // the common case, made directly
    }
    let (paths, others): (Vec<&str>, Vec<&str>) = apps
        .iter()
        .map(String::as_str)
        .partition(|a| a.starts_with('/'));
    let paths = match paths.len() {
        0 => None,
        1 => Some(format!("app {}", paths[0])),
        _ => Some(format!("apps {}", paths.join(", "))),
    };
    let all: Vec<String> = paths
        .into_iter()
        .chain(others.into_iter().map(str::to_owned))
        .collect();
    (!all.is_empty()).then(|| all.join(", "))
}

/// [`origin`] of one app: `app /a`, or the id as it is when it is no app
/// path.
pub(super) fn origin_of_one(app: &str) -> String {
    match app.starts_with('/') {
        true => format!("app {app}"),
        false => app.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::marathon::parse::{ParseError, parse_apps, test_util::*};
    use crate::model::Proto;
    use crate::naming::{self, Family, VipAllocator};

    #[test]
    fn apps_sharing_a_vip_merge() {
        let p = parse(&apps(json!([
            host_app(
                "/redis-a",
                "redis:6379",
                json!([running("a1", "10.0.0.1", &[31001])])
            ),
            host_app(
                "/redis-b",
                "/redis:6379",
                json!([running("b1", "10.0.0.2", &[31002])])
            ),
        ])));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(services(&p).len(), 1);
        let (v, spec) = services(&p).iter().next().unwrap();
        assert_eq!(v.addr, sa("11.202.66.162:6379"));
        // The smallest spelling names it, whatever the app order.
        assert_eq!(spec.name.as_deref(), Some("/redis:6379"));
        assert_eq!(
            spec.backends,
            backends(&[("10.0.0.1:31001", 1), ("10.0.0.2:31002", 1)])
        );
    }

    #[test]
    fn addresses_stable_across_syncs() {
        let mut alloc = VipAllocator::new();
        let both = apps(json!([
            host_app("/a", "/a:80", json!([running("a", "10.0.0.1", &[1])])),
            host_app("/b", "/b:80", json!([running("b", "10.0.0.2", &[1])])),
        ]));
        let s1 = parse_apps(both.as_bytes(), &mut alloc).unwrap();
        let only_b = apps(json!([host_app(
            "/b",
            "/b:80",
            json!([running("b", "10.0.0.2", &[1])])
        )]));
        let s2 = parse_apps(only_b.as_bytes(), &mut alloc).unwrap();
        assert_eq!(named(&s1, "/b:80"), named(&s2, "/b:80"));
        // `/a` is gone, so its name is released.
        assert_eq!(alloc.allocations(Family::V4).len(), 1);
        assert_eq!(alloc.get(Family::V4, "a.marathon"), None);
    }

    #[test]
    fn ip_vip_keeps_its_family() {
        let p = parse(&apps(json!([{
            "id": "/v6only",
            "networks": [{"mode": "container", "name": "dcos6"}],
            "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "12.0.0.2:80"}}]},
            "tasks": [{"id": "t", "host": "10.0.1.11", "state": "TASK_RUNNING",
                       "ipAddresses": [{"ipAddress": "fd00::7"}]}]
        }, {
            "id": "/v4host",
            "portDefinitions": [{"port": 0, "labels": {"VIP_0": "12.0.0.2:80"}}],
            "tasks": [running("h", "10.0.0.1", &[31000])]
        }])));
        warned(
            &p,
            Some("/v6only"),
            &[
                "container.portMappings[0] label VIP_0: tasks[0] (t) backend [fd00::7]:80 is IPv6 but the VIP 12.0.0.2:80 is IPv4",
            ],
        );
        assert_eq!(
            services(&p)[&vip("12.0.0.2:80", Proto::Tcp)].backends,
            backends(&[("10.0.0.1:31000", 1)])
        );
    }

    #[test]
    fn ip_vip_on_a_named_address_is_left_out() {
        let taken = "11.202.66.162:6379"; // redis.marathon's address
        let p = parse(&apps(json!([
            host_app(
                "/redis",
                "/redis:6379",
                json!([running("r", "10.0.0.1", &[31000])])
            ),
            host_app(
                "/squatter",
                taken,
                json!([running("s", "10.0.0.2", &[31000])])
            ),
        ])));
        warned(
            &p,
            Some("/squatter"),
            &[&format!(
                "VIP {taken}/tcp ({taken}) is the address allocated to named VIP redis.marathon"
            )],
        );
        let s = &services(&p)[&vip(taken, Proto::Tcp)];
        assert_eq!(s.name.as_deref(), Some("/redis:6379"));
        assert_eq!(s.backends, backends(&[("10.0.0.1:31000", 1)]));
    }

    #[test]
    fn named_vip_follows_backend_family() {
        // Host networking on an IPv6 agent: only an IPv6 VIP.
        let p = parse(&apps(json!([host_app(
            "/h6",
            "/h6:80",
            json!([{"id": "t", "host": "fd00::11", "ports": [31000], "state": "TASK_RUNNING"}])
        )])));
        let (v, spec) = only_named(&p, "/h6:80");
        assert!(in_v6_range(v.addr.ip()), "{v}");
        assert_eq!(spec.backends, backends(&[("[fd00::11]:31000", 1)]));
        // No backends at all: no VIP in either family.
        let p = parse(&apps(json!([host_app("/none", "/none:80", json!([]))])));
        assert!(services(&p).is_empty(), "{:?}", services(&p));
    }

    /// Mirrors dcos-net's dcos_l4lb_mesos_poller_SUITE `test_app_restart`: an
    /// app with VIP `merp:5000` has its VIP while a task runs, none once it
    /// has no task (scaled to 0), and the same VIP again, now to the new
    /// task's host port, after the restart. Here also for an IP VIP, and the
    /// named VIP's address comes back identical (lookup_vips: names go when
    /// their last backend goes).
    #[test]
    fn app_scaled_to_zero_withdraws_its_vips_until_tasks_return() {
        let app = |tasks: Value| {
            json!({"id": "/app", "portDefinitions": [{"port": 0, "labels": {
                "VIP_0": "merp:5000", "VIP_1": "198.18.0.9:5000"}}], "tasks": tasks})
        };
        let mut alloc = VipAllocator::new();
        let mut sync = |tasks: Value| parse_apps(apps(json!([app(tasks)])).as_bytes(), &mut alloc);
        let up = sync(json!([running("t1", "10.0.0.243", &[12049])])).unwrap();
        let (v1, spec) = only_named(&up, "merp:5000");
        assert_eq!(spec.backends, backends(&[("10.0.0.243:12049", 1)]));
        assert!(services(&up).contains_key(&vip("198.18.0.9:5000", Proto::Tcp)));

        let zero = sync(json!([])).unwrap();
        assert!(services(&zero).is_empty(), "{:?}", services(&zero));
        assert!(zero.warnings.is_empty(), "{:?}", zero.warnings);

        let back = sync(json!([running("t2", "10.0.0.243", &[23176])])).unwrap();
        let (v3, spec) = only_named(&back, "merp:5000");
        assert_eq!(v3, v1, "the address is a hash: it comes back identical");
        assert_eq!(spec.backends, backends(&[("10.0.0.243:23176", 1)]));
        assert_eq!(
            services(&back)[&vip("198.18.0.9:5000", Proto::Tcp)].backends,
            backends(&[("10.0.0.243:23176", 1)])
        );
    }

    #[test]
    fn allocation_failure_is_an_error() {
        let mut tiny = VipAllocator::with_ranges(
            (std::net::Ipv4Addr::new(10, 0, 0, 0), 1),
            (naming::V6_RANGE_START, naming::V6_RANGE_SIZE),
        );
        let body = apps(json!([
            host_app("/a", "/a:80", json!([running("a", "10.0.0.1", &[1])])),
            host_app("/b", "/b:80", json!([running("b", "10.0.0.2", &[1])])),
        ]));
        let e = parse_apps(body.as_bytes(), &mut tiny).unwrap_err();
        assert!(matches!(e, ParseError::Naming(_)), "{e}");
    }
}
