//! The index against a from-scratch reference, over random catalog changes.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use hickory_proto::rr::{LowerName, Name, Record};
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::{Value, ZoneIndex};
use crate::dns::records::{
    ZoneOptions, Zones, apex_records, build_zones, cluster_data, glue_data, task_data, vip_datum,
    zone_heads,
};
use crate::model::{Catalog, Proto, ServiceSpec, TaskPort, TaskRecord, Vip};

/// (zone index, name) → its records as `ttl data`, in served order.
type Dump = BTreeMap<(usize, String), Vec<String>>;

fn line(r: &Record) -> String {
    format!("{} {}", r.ttl(), r.data())
}

fn dump(z: &Zones) -> Dump {
    let mut out = Dump::new();
    for (i, zone) in z.zones().iter().enumerate() {
        let mut count = 0;
        for (name, records) in zone.iter() {
            let name = LowerName::new(&name.to_name());
            assert!(records.iter().all(|r| LowerName::new(r.name()) == name));
            count += records.len();
            out.insert(
                (i, name.to_string()),
                records.iter().map(|r| line(&r)).collect(),
            );
        }
        assert_eq!(zone.record_count(), count, "{}", zone.origin());
    }
    out
}

/// The zones as a full build defines them, written without the index: every
/// contributor's data merged per name (addresses sorted, then SRVs sorted),
/// every ancestor of a name below the apex present, SOA and NS at the apex.
fn reference(c: &Catalog, published: &BTreeSet<Vip>, opts: &ZoneOptions, serial: u32) -> Dump {
    let mut data = glue_data(opts);
    for t in c.tasks.iter().filter(|t| t.running) {
        data.extend(task_data(t, &opts.ip_sources, &opts.mesos_domain));
    }
    if let Some(cluster) = &c.cluster {
        data.extend(cluster_data(cluster, &opts.mesos_domain));
    }
    for (vip, spec) in c.services.services.iter() {
        data.extend(vip_datum(vip, spec).filter(|_| published.contains(vip)));
    }
    type Sets = (BTreeSet<IpAddr>, BTreeSet<(u16, Name)>);
    let mut nodes: BTreeMap<(usize, LowerName), Sets> = BTreeMap::new();
    for d in data {
        let node = nodes.entry((d.zone, LowerName::new(&d.owner.to_name())));
        let node = node.or_default();
        match d.value {
            Value::Addr(ip) => drop(node.0.insert(ip)),
            Value::Srv(port, target) => drop(node.1.insert((port, target.to_name()))),
        }
    }
    let heads = zone_heads(opts);
    let mut out = Dump::new();
    for ((zone, name), (addrs, srvs)) in nodes {
        let (origin, ttl) = &heads[zone];
        let values = (addrs.into_iter().map(Value::Addr))
            .chain(srvs.into_iter().map(|(p, t)| Value::Srv(p, t.into())));
        let lines = values.map(|v| format!("{ttl} {}", v.rdata())).collect();
        out.insert((zone, name.to_string()), lines);
        let origin = LowerName::new(origin);
        let mut n = name.base_name();
        while origin.zone_of(&n) && n != origin {
            out.entry((zone, n.to_string())).or_default();
            n = n.base_name();
        }
    }
    for (zone, (origin, ttl)) in heads.iter().enumerate() {
        let apex = out
            .entry((zone, LowerName::new(origin).to_string()))
            .or_default();
        apex.extend(apex_records(origin, *ttl, serial).iter().map(line));
    }
    out
}

const APPS: [&str; 5] = ["/web", "/db", "/group/web", "/dog/big", "/Big.Dog"];
const FRAMEWORKS: [&str; 2] = ["marathon", "hello-world"];

fn pick<T: Clone>(rng: &mut StdRng, from: &[T]) -> T {
    from[rng.random_range(0..from.len())].clone()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn random_ports(rng: &mut StdRng) -> Box<[TaskPort]> {
    let pool = [
        (80, vec![Proto::Tcp], Some("http")),
        (53, vec![Proto::Udp, Proto::Tcp], Some("Dns_Port")),
        (8080, vec![Proto::Tcp], None),
        (80, vec![Proto::Udp], None),
    ];
    (0..rng.random_range(0..3))
        .map(|_| {
            let (port, protocols, name) = pick(rng, &pool);
            TaskPort {
                port,
                protocols: protocols.into(),
                name: name.map(Into::into),
            }
        })
        .collect()
}

fn random_ips(rng: &mut StdRng) -> Box<[IpAddr]> {
    ["127.0.9.1", "127.0.9.2", "fd00::9"]
        .into_iter()
        .filter(|_| rng.random_bool(0.4))
        .map(ip)
        .collect()
}

fn random_agent(rng: &mut StdRng) -> Option<IpAddr> {
    pick(
        rng,
        &[None, Some("127.0.1.1"), Some("127.0.1.2"), Some("fd00::1")],
    )
    .map(ip)
}

fn random_task(rng: &mut StdRng, n: usize) -> TaskRecord {
    TaskRecord {
        app_id: pick(rng, &APPS).into(),
        task_id: format!("task.{}", n % 40).into(),
        framework: pick(rng, &FRAMEWORKS).into(),
        agent_id: pick(rng, &["a-S1", "a-S2"]).into(),
        agent_ip: random_agent(rng),
        task_ips: random_ips(rng),
        ports: random_ports(rng),
        host_ports: rng.random_bool(0.5),
        running: rng.random_bool(0.8),
        healthy: pick(rng, &[None, Some(true), Some(false)]),
        in_pod: rng.random_bool(0.2),
        zone: None,
    }
}

/// One field of `t` changed at random.
fn modify(rng: &mut StdRng, t: &mut TaskRecord) {
    match rng.random_range(0..9) {
        0 => t.task_ips = random_ips(rng),
        1 => t.ports = random_ports(rng),
        2 => t.running = !t.running,
        3 => t.agent_ip = random_agent(rng),
        4 => t.app_id = pick(rng, &APPS).into(),
        5 => t.host_ports = !t.host_ports,
        6 => t.in_pod = !t.in_pod,
        7 => t.healthy = pick(rng, &[None, Some(true), Some(false)]),
        _ => t.framework = pick(rng, &FRAMEWORKS).into(),
    }
}

fn vips() -> [Vip; 4] {
    let vip = |a: &str, proto| Vip {
        addr: a.parse::<SocketAddr>().unwrap(),
        proto,
    };
    [
        vip("198.18.0.1:80", Proto::Tcp),
        vip("198.18.0.1:8080", Proto::Tcp),
        vip("198.18.0.2:80", Proto::Tcp),
        vip("[fd00::1]:53", Proto::Udp),
    ]
}

/// Declares, renames or drops a VIP, or flips whether the datapath holds it.
fn change_vips(rng: &mut StdRng, c: &mut Catalog, published: &mut BTreeSet<Vip>) {
    let vip = pick(rng, &vips());
    match rng.random_range(0..3) {
        0 => drop(c.services.services.remove(&vip)),
        1 => {
            let spec = ServiceSpec {
                name: pick(
                    rng,
                    &[Some("/web:80"), Some("/db"), Some("198.18.0.9:80"), None],
                )
                .map(str::to_owned),
                framework: pick(rng, &[None, Some("hello-world")]).map(str::to_owned),
                ..ServiceSpec::default()
            };
            c.services.services.insert(vip, spec);
        }
        _ => {
            if !published.remove(&vip) {
                published.insert(vip);
            }
        }
    }
}

/// None, or a cluster of two candidate masters, a few agents (addresses
/// tasks use too) and frameworks; `marathon.mesos` is also the empty
/// non-terminal above Marathon's task names.
fn random_cluster(rng: &mut StdRng) -> Option<Arc<crate::model::Cluster>> {
    use crate::model::{Cluster, Endpoint};
    if rng.random_range(0..4) == 0 {
        return None;
    }
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    let masters = [at("198.18.9.1:5050"), at("198.18.9.2:5050")];
    let end = |ip: &str, port| Endpoint {
        ip: self::ip(ip),
        port,
    };
    let agents = ["198.18.0.1", "198.18.0.2", "fd00::1"]
        .into_iter()
        .filter(|_| rng.random_range(0..2) == 0)
        .map(|a| end(a, Some(5051)))
        .collect();
    let frameworks = [("marathon", "198.18.9.3"), ("chronos", "198.18.9.4")]
        .into_iter()
        .filter(|_| rng.random_range(0..2) == 0)
        .map(|(n, ip)| (n.to_owned(), end(ip, Some(25501))))
        .collect();
    Some(Arc::new(Cluster {
        leader: Some(pick(rng, &masters)),
        masters: masters[..rng.random_range(0..3)].to_vec(),
        agents,
        frameworks,
    }))
}

/// One random catalog change: a task added (possibly under an id already
/// there), removed, changed, or replaced by an equal copy; or a VIP change.
fn change(rng: &mut StdRng, c: &mut Catalog, published: &mut BTreeSet<Vip>, n: usize) {
    let len = c.tasks.len();
    match rng.random_range(0..11) {
        10 => c.cluster = random_cluster(rng),
        0..=1 => c.tasks.push(Arc::new(random_task(rng, n))),
        2 if len > 0 => drop(c.tasks.swap_remove(rng.random_range(0..len))),
        3..=6 if len > 0 => {
            let i = rng.random_range(0..len);
            modify(rng, Arc::make_mut(&mut c.tasks[i]));
        }
        7 if len > 0 => {
            let i = rng.random_range(0..len);
            c.tasks[i] = Arc::new(TaskRecord::clone(&c.tasks[i]));
        }
        _ => change_vips(rng, c, published),
    }
}

/// Property: after each of 400 random changes fed to one index, every
/// zone (names, empty non-terminals, records and their order, counts)
/// equals the reference build and a fresh index's of the same catalog.
#[test]
fn random_changes_match_a_full_build() {
    let mut rng = StdRng::seed_from_u64(14);
    let opts = ZoneOptions::default();
    let mut index = ZoneIndex::new(opts.clone());
    let mut c = Catalog::default();
    let mut published = BTreeSet::new();
    for n in 0..20 {
        c.tasks.push(Arc::new(random_task(&mut rng, n)));
    }
    for step in 0..400 {
        let got = dump(&index.update_at(&c, &published, 1));
        let want = reference(&c, &published, &opts, 1);
        assert_eq!(got, want, "step {step}: {c:#?}");
        let fresh = ZoneIndex::new(opts.clone()).update_at(&c, &published, 1);
        assert_eq!(dump(&fresh), want, "step {step}");
        change(&mut rng, &mut c, &mut published, step);
    }
}

/// `size` tasks, five per app, on 50 agents, one port each.
fn fleet(size: usize) -> Catalog {
    let tasks = (0..size)
        .map(|b| {
            let agent = ip(&format!("127.1.0.{}", b % 50 + 1));
            Arc::new(TaskRecord {
                app_id: format!("/app-{}", b / 5).into(),
                task_id: format!("app-{}.{b}", b / 5).into(),
                framework: "marathon".into(),
                agent_id: format!("a-S{}", b % 50).into(),
                agent_ip: Some(agent),
                ports: vec![TaskPort {
                    port: 20_000 + b as u16,
                    protocols: [Proto::Tcp].into(),
                    name: None,
                }]
                .into(),
                host_ports: true,
                running: true,
                healthy: Some(true),
                ..TaskRecord::default()
            })
        })
        .collect();
    Catalog {
        tasks,
        ..Catalog::default()
    }
}

/// Node writes when one task's health flips, then when it is killed.
fn writes_by_one_change(size: usize) -> [usize; 2] {
    let mut c = fleet(size);
    let mut index = ZoneIndex::new(ZoneOptions::default());
    index.update_at(&c, &BTreeSet::new(), 1);
    assert!(
        index.node_writes() > size,
        "the first update writes every name"
    );
    Arc::make_mut(&mut c.tasks[7]).healthy = Some(false);
    index.update_at(&c, &BTreeSet::new(), 2);
    let flip = index.node_writes();
    c.tasks.remove(7);
    let zones = index.update_at(&c, &BTreeSet::new(), 3);
    assert_eq!(
        dump(&zones),
        reference(&c, &BTreeSet::new(), &ZoneOptions::default(), 3)
    );
    [flip, index.node_writes()]
}

/// One task changed: the same few node writes whatever the fleet's size
/// (its records out and in at its own names and its app's shared ones, the
/// ancestors of names that come or go, the three apexes).
#[test]
fn one_changed_task_writes_a_few_names() {
    let small = writes_by_one_change(50);
    assert_eq!(small, writes_by_one_change(1_000));
    assert!(small.iter().all(|&n| (3..=40).contains(&n)), "{small:?}");
}

/// Tasks rebuilt with equal values (a Mesos snapshot's new records) change
/// nothing: only the apexes (new serial) are written.
#[test]
fn equal_records_are_unchanged() {
    let c = fleet(20);
    let mut index = ZoneIndex::new(ZoneOptions::default());
    let before = dump(&index.update_at(&c, &BTreeSet::new(), 1));
    let copy = Catalog {
        tasks: c
            .tasks
            .iter()
            .map(|t| Arc::new(TaskRecord::clone(t)))
            .collect(),
        ..c.clone()
    };
    let after = dump(&index.update_at(&copy, &BTreeSet::new(), 1));
    assert_eq!(index.node_writes(), 3);
    assert_eq!(before, after);
}

/// A snapshot handed out keeps its content while the index moves on.
#[test]
fn snapshots_stay_as_they_were() {
    let mut c = fleet(10);
    let mut index = ZoneIndex::new(ZoneOptions::default());
    let first = index.update_at(&c, &BTreeSet::new(), 1);
    let seen = dump(&first);
    c.tasks.clear();
    let empty = index.update_at(&c, &BTreeSet::new(), 2);
    assert_eq!(dump(&first), seen);
    assert_eq!(
        dump(&empty),
        reference(&c, &BTreeSet::new(), &ZoneOptions::default(), 2)
    );
    assert_eq!(
        dump(&build_zones(&c, &BTreeSet::new(), &ZoneOptions::default())).len(),
        dump(&empty).len()
    );
}
