//! How long DNS zones take at 10,000 Mesos tasks (2,000 apps x 5, one named
//! VIP each, the shape of `cargo xtask bench mesos`): a full build, then a
//! [`ZoneIndex`] fed one changed task at a time (killed, added back, health
//! flipped; every record rebuilt, as the Mesos source does), the heap the
//! index and plain zones take, then a lookup and a whole answer per name.
//! `cargo run --release -p l4lb-core --example zone_updates`.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::{BTreeSet, HashMap},
    hint::black_box,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use hickory_proto::{
    op::{Message, Query},
    rr::{LowerName, Record, RecordType},
};
use l4lb_core::{
    dns::{ZoneIndex, ZoneOptions, Zones, answer, build_zones, records::Lookup},
    model::{Catalog, DesiredState, Proto, ServiceSpec, TaskPort, TaskRecord, Vip},
};
use sha1::{Digest, Sha1};

/// Counts live heap bytes, to weigh the index against plain zones.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

const APPS: usize = 2_000;
const PER_APP: usize = 5;

fn task(b: usize) -> TaskRecord {
    let agent: IpAddr = format!("127.1.0.{}", b % 250 + 1).parse().unwrap();
    let app = b / PER_APP;
    TaskRecord {
        app_id: format!("/app-{app}").into(),
        task_id: format!("app-{app}.instance-{b:08x}._app.1").into(),
        framework: "marathon".into(),
        agent_id: format!("agent-S{}", b % 250).into(),
        agent_ip: Some(agent),
        task_ips: Box::default(),
        ports: vec![TaskPort {
            port: 20_000 + (b / 250) as u16,
            protocols: [Proto::Tcp].into(),
            name: None,
        }]
        .into(),
        host_ports: true,
        running: true,
        healthy: Some(true),
        in_pod: false,
        zone: None,
    }
}

fn catalog() -> (Catalog, BTreeSet<Vip>) {
    let tasks: Vec<Arc<TaskRecord>> = (0..APPS * PER_APP).map(|b| Arc::new(task(b))).collect();
    let mut services = DesiredState::default();
    let mut published = BTreeSet::new();
    for app in 0..APPS {
        let vip = Vip {
            addr: SocketAddr::new(
                format!("11.{}.{}.1", app / 250, app % 250).parse().unwrap(),
                80,
            ),
            proto: Proto::Tcp,
        };
        let backends = tasks[app * PER_APP..(app + 1) * PER_APP]
            .iter()
            .map(|t| (SocketAddr::new(t.agent_ip.unwrap(), t.ports[0].port), 1))
            .collect();
        services.services.insert(
            vip,
            ServiceSpec {
                name: Some(format!("/app-{app}:80")),
                framework: None,
                origin: None,
                backends,
            },
        );
        published.insert(vip);
    }
    let catalog = Catalog {
        services,
        tasks,
        ..Default::default()
    };
    (catalog, published)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Digest of every zone's names and records, the SOA serial left out.
fn digest(z: &Zones) -> String {
    let mut lines: Vec<String> = Vec::new();
    for zone in z.zones() {
        for (name, records) in zone.iter() {
            let rs: Vec<String> = records
                .iter()
                .filter(|r| r.record_type() != RecordType::SOA)
                .map(|r| format!("{} {} {}", r.name(), r.ttl(), r.data()))
                .collect();
            lines.push(format!("{name} [{}]", rs.join(", ")));
        }
    }
    lines.sort();
    let mut h = Sha1::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    format!("{:x} ({} names)", h.finalize(), lines.len())
}

/// The zones as std `HashMap` nodes (their form before the index), and the
/// heap they take in MB.
fn old_style(z: &Zones) -> (Vec<HashMap<LowerName, Vec<Record>>>, f64) {
    let before = live_mb();
    let maps = z
        .zones()
        .iter()
        .map(|zone| {
            zone.iter()
                .map(|(n, r)| (LowerName::new(&n.to_name()), r.iter().collect()))
                .collect()
        })
        .collect();
    (maps, live_mb() - before)
}

/// ns per `get` of every name in the zones' persistent maps and in a std
/// `HashMap` holding the same nodes (what zones used before the index), the
/// best of 5 interleaved rounds.
fn lookups(z: &Zones) {
    let names: Vec<LowerName> = z
        .zones()
        .iter()
        .flat_map(|zone| zone.iter().map(|(n, _)| LowerName::new(&n.to_name())))
        .collect();
    let (std_maps, _) = old_style(z);
    let (mut ours, mut std) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        for n in &names {
            assert!(matches!(black_box(z.lookup(n)), Lookup::Found(..)));
        }
        ours = ours.min(t.elapsed().as_nanos() as f64 / names.len() as f64);
        let t = Instant::now();
        for n in &names {
            let zone = z.zones().iter().position(|zone| zone.origin().zone_of(n));
            assert!(black_box(zone.and_then(|i| std_maps[i].get(n))).is_some());
        }
        std = std.min(t.elapsed().as_nanos() as f64 / names.len() as f64);
    }
    println!("lookup: {ours:.0} ns per name (std HashMap nodes: {std:.0} ns)");
    let queries: Vec<Vec<u8>> = names
        .iter()
        .step_by(20)
        .map(|n| {
            let mut m = Message::new();
            m.set_id(7)
                .add_query(Query::query(n.clone().into(), RecordType::A));
            m.to_vec().unwrap()
        })
        .collect();
    let t = Instant::now();
    for _ in 0..10 {
        for q in &queries {
            black_box(answer(z, q, 1232));
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (10 * queries.len()) as f64 / 1e3;
    println!(
        "answer: {per:.2} us per A query ({} queries x 10)",
        queries.len()
    );
}

fn main() {
    let (catalog, published) = catalog();
    let opts = ZoneOptions::default();
    let before = live_mb();
    let mut index = ZoneIndex::new(opts.clone());
    let t = Instant::now();
    let first = index.update(&catalog, &published);
    println!(
        "index first update: {:.1} ms, {} records",
        ms(t),
        first.record_count()
    );
    drop(first);
    let with_index = live_mb();
    let mut zones = build_zones(&catalog, &published, &opts);
    let plain = old_style(&zones);
    println!(
        "heap: the index (its zones included) {:.1} MB; the zones alone {:.1} MB, as std HashMap nodes {:.1} MB",
        with_index - before,
        live_mb() - with_index - plain.1,
        plain.1
    );
    drop(plain);
    for _ in 0..3 {
        let t = Instant::now();
        zones = build_zones(&catalog, &published, &opts);
        println!(
            "build_zones: {:.1} ms, {} records",
            ms(t),
            zones.record_count()
        );
    }
    println!("digest {}", digest(&zones));
    updates(index, &catalog, &published, &opts);
    lookups(&zones);
}

/// One task changed per update, cycling through tasks: killed (gone from
/// the catalog), added back, unhealthy, healthy again.
fn updates(mut index: ZoneIndex, catalog: &Catalog, published: &BTreeSet<Vip>, opts: &ZoneOptions) {
    let mut current = catalog.clone();
    let mut took: Vec<(&str, f64, usize)> = Vec::new();
    for round in 0..50 {
        let b = round * 197 % current.tasks.len();
        let id = task(b).task_id;
        for what in ["killed", "re-added", "unhealthy", "healthy"] {
            let at = current.tasks.iter().position(|t| *t.task_id == *id);
            match (what, at) {
                ("killed", Some(i)) => drop(current.tasks.remove(i)),
                ("re-added", None) => current.tasks.push(Arc::new(task(b))),
                ("unhealthy", Some(i)) => {
                    Arc::make_mut(&mut current.tasks[i]).healthy = Some(false)
                }
                ("healthy", Some(i)) => Arc::make_mut(&mut current.tasks[i]).healthy = Some(true),
                _ => unreachable!("{what} {at:?}"),
            }
            // As the Mesos source: every record rebuilt, equal but not shared.
            let rebuilt = Catalog {
                tasks: current
                    .tasks
                    .iter()
                    .map(|t| Arc::new(TaskRecord::clone(t)))
                    .collect(),
                services: current.services.clone(),
                ..Default::default()
            };
            let t = Instant::now();
            let zones = black_box(index.update(&rebuilt, published));
            took.push((what, ms(t), index.node_writes()));
            drop(zones);
        }
    }
    for what in ["killed", "re-added", "unhealthy", "healthy"] {
        let mut v: Vec<f64> = took.iter().filter(|x| x.0 == what).map(|x| x.1).collect();
        v.sort_by(f64::total_cmp);
        let names = took
            .iter()
            .filter(|x| x.0 == what)
            .map(|x| x.2)
            .max()
            .unwrap_or(0);
        println!(
            "update, one task {what}: median {:.2} ms, max {:.2} ms ({} runs), at most {names} node writes",
            v[v.len() / 2],
            v[v.len() - 1],
            v.len()
        );
    }
    let fresh = build_zones(&current, published, opts);
    let last = index.update(&current, published);
    assert_eq!(digest(&fresh), digest(&last), "index and full build differ");
}
