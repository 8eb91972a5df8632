//! The incremental catalog gives what a full build of the same parts gives,
//! after every change of a random history.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use super::*;
use crate::marathon::parse::{Keep, NamedAt, PartBuilder, catalog_from_parts};
use crate::model::TaskRecord;

/// splitmix64: a seeded, reproducible stream without a new dependency (the
/// test needs a few hundred draws, not a statistical generator).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Five addresses per family, so names probe past each other and IP VIPs
/// land on named ones' addresses; six names, so a full family fails.
fn tiny_allocator() -> VipAllocator {
    VipAllocator::with_ranges(
        (Ipv4Addr::new(198, 18, 0, 0), 5),
        (Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100), 5),
    )
}

const LABELS: &[&str] = &[
    "/a:80",
    "/a:81",
    "/b:80",
    "c:80",
    "/d:53",
    "/e:80",
    "/f:80",
    "198.18.0.1:80",
    "198.18.0.3:80",
    "198.18.0.9:80",
    "[fd00::101]:80",
    "[fd00::9]:80",
];

fn backend(rng: &mut Rng) -> SocketAddr {
    let ip = match rng.below(6) {
        0..=3 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + rng.below(3) as u8)),
        _ => IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            0,
            1 + rng.below(2) as u16,
        )),
    };
    SocketAddr::new(ip, 31000 + rng.below(2) as u16)
}

/// A task's part: some VIP labels (sometimes of another framework), some
/// serving endpoints of weight 0 or 1, a record, at times a warning or an
/// agent known by name. Ids repeat across keys, as two frameworks' tasks of
/// one name would.
fn random_part(rng: &mut Rng) -> AppPart {
    let id = match rng.below(3) {
        0 => format!("/app-{}", rng.below(4)),
        _ => format!("task t{} of fw", rng.below(8)),
    };
    let mut b = PartBuilder::new(&id);
    let framework = if rng.chance(15) {
        "hello-world"
    } else {
        crate::declare::FRAMEWORK
    };
    let choices = [
        vec![Proto::Tcp],
        vec![Proto::Udp],
        vec![Proto::Tcp, Proto::Udp],
    ];
    let protos = rng.pick(&choices);
    let labels: Vec<String> = (0..rng.below(3))
        .map(|_| rng.pick(LABELS).to_string())
        .collect();
    let vips = b.label_vips("ports[0]", protos, &labels, framework);
    for _ in 0..rng.below(3) {
        let addrs: Vec<SocketAddr> = (0..1 + rng.below(2)).map(|_| backend(rng)).collect();
        let weight = rng.below(2) as u32;
        b.serve(&vips, &addrs, weight, "ports[0]");
    }
    let named = rng.chance(2).then(|| NamedAt {
        host: Arc::from("agent-1.example.com"),
        fallback: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))),
    });
    if let Some(agent) = &named {
        b.serve_on_agent(&vips, agent, 31005, 1);
    }
    if rng.chance(10) {
        b.warn(format!("warning {}", rng.below(3)));
    }
    let record = TaskRecord {
        app_id: format!("/app-{}", rng.below(4)).into(),
        task_id: format!("t{}", rng.below(6)).into(),
        ..TaskRecord::default()
    };
    b.task(record, named.as_ref());
    b.finish()
}

/// Random replacements and removals of 24 keys' parts; after each, the
/// incremental catalog equals the full build of the same parts in key
/// order (catalog, warnings, hosts), each side with its own allocator fed
/// the same history, so raw addresses compare too (a set of names passed
/// again unchanged leaves an allocator as it was, so skipping such calls
/// changes nothing). Allocation failures must agree as well. A second
/// incremental catalog gets a fresh allocator every time (the allocator is
/// not the one its addresses came from), against a fresh full build. A
/// third is fed the parts without records ([`Keep::ServicesOnly`]) and gives
/// the full build less its records; a fourth, their records packed
/// ([`Keep::Packed`]), gives the full build once they are unpacked.
#[test]
fn random_changes_give_the_full_build() {
    for seed in [1, 2, 3, 14] {
        let mut rng = Rng(seed);
        let mut model: BTreeMap<u32, AppPart> = BTreeMap::new();
        let mut inc = IncrementalCatalog::default();
        let mut inc_fresh = IncrementalCatalog::default();
        let mut inc_lean = IncrementalCatalog::default();
        let mut inc_packed = IncrementalCatalog::default();
        let (mut alloc_inc, mut alloc_full) = (tiny_allocator(), tiny_allocator());
        let (mut alloc_lean, mut alloc_packed) = (tiny_allocator(), tiny_allocator());
        let mut seen = [0usize; 6];
        for step in 0..400 {
            let key = rng.below(24) as u32;
            let part = (!rng.chance(30)).then(|| random_part(&mut rng));
            match &part {
                Some(p) => model.insert(key, p.clone()),
                None => model.remove(&key),
            };
            inc.replace(key, part.clone());
            inc_lean.replace(key, part.clone().map(|p| p.kept(Keep::ServicesOnly)));
            inc_packed.replace(key, part.clone().map(|p| p.kept(Keep::Packed)));
            inc_fresh.replace(key, part);

            let full = catalog_from_parts(model.values(), &[], &mut alloc_full);
            let got = inc.catalog(&mut alloc_inc).map(without_map);
            let lean = inc_lean.catalog(&mut alloc_lean).map(without_map);
            let packed = inc_packed.catalog(&mut alloc_packed).map(without_map);
            let at = format!("seed {seed} step {step}");
            let no_records = |mut p: Parsed| {
                p.catalog.tasks.clear();
                p
            };
            assert_eq!(
                lean.ok(),
                full.as_ref().ok().cloned().map(no_records),
                "{at} (no records)"
            );
            let unpacked = |mut p: Parsed| {
                seen[5] += usize::from(!p.catalog.packed.is_empty());
                let (catalog, skipped) = p.catalog.unpacked();
                assert_eq!(skipped, 0);
                p.catalog = catalog;
                p
            };
            assert_eq!(
                packed.map(unpacked).ok(),
                full.as_ref().ok().cloned(),
                "{at} (packed)"
            );
            match (&full, &got) {
                (Ok(f), Ok(g)) => {
                    assert_eq!(g, f, "{at}");
                    seen[0] += usize::from(!f.warnings.is_empty());
                    seen[1] += f.catalog.services.services.len();
                    seen[4] += usize::from(!f.hosts.is_empty());
                }
                (Err(_), Err(_)) => seen[2] += 1,
                _ => panic!("{at}: full {full:?} incremental {got:?}"),
            }
            for family in [Family::V4, Family::V6] {
                let (a, b) = (
                    alloc_full.allocations(family),
                    alloc_inc.allocations(family),
                );
                assert_eq!(b, a, "{at}");
            }
            let (mut fresh_a, mut fresh_b) = (tiny_allocator(), tiny_allocator());
            let fresh_full = catalog_from_parts(model.values(), &[], &mut fresh_a);
            let fresh_got = inc_fresh.catalog(&mut fresh_b).map(without_map);
            match (fresh_full, fresh_got) {
                (Ok(f), Ok(g)) => assert_eq!(g, f, "{at} (fresh allocators)"),
                (Err(_), Err(_)) => {}
                (f, g) => panic!("{at} (fresh allocators): full {f:?} incremental {g:?}"),
            }
            for family in [Family::V4, Family::V6] {
                let (a, b) = (fresh_a.allocations(family), fresh_b.allocations(family));
                assert_eq!(b, a, "{at} (fresh allocators hold the names)");
            }
            seen[3] += usize::from(model.is_empty());
        }
        // The history did reach the cases it is for.
        // (seen[4]: steps with a part on a named agent, a full build;
        // seen[5]: catalogs that carried packed records.)
        assert!(
            seen[0] > 20 && seen[1] > 400 && seen[4] > 0 && seen[4] < 200 && seen[5] > 100,
            "seed {seed}: {seen:?}"
        );
    }
}

/// `p` without its persistent copy of the services, checked to be the
/// catalog's (a full build, on a named agent, has none).
fn without_map(mut p: Parsed) -> Parsed {
    if let Some(services) = p.services.take() {
        assert!(services.iter().eq(&p.catalog.services.services));
    }
    p
}

/// Squatter warnings (an IP VIP on a named VIP's address) and allocation
/// failures occur in the random histories above, so they compare there.
#[test]
fn random_histories_reach_collisions_and_full_ranges() {
    let (mut squats, mut fails) = (0, 0);
    for seed in [1, 2, 3, 14] {
        let mut rng = Rng(seed);
        let mut inc = IncrementalCatalog::default();
        let mut alloc = tiny_allocator();
        for _ in 0..400 {
            let key = rng.below(24) as u32;
            let part = (!rng.chance(30)).then(|| random_part(&mut rng));
            inc.replace(key, part);
            match inc.catalog(&mut alloc) {
                Ok(p) => {
                    squats += p
                        .warnings
                        .iter()
                        .filter(|w| w.what.contains("allocated to named VIP"))
                        .count()
                }
                Err(_) => fails += 1,
            }
        }
    }
    assert!(
        squats > 10 && fails > 0,
        "{squats} squats, {fails} failures"
    );
}

fn host_part(id: &str, label: &str, at: &str, weight: u32) -> AppPart {
    let mut b = PartBuilder::new(id);
    let vips = b.label_vips("ports[0]", &[Proto::Tcp], &[label.to_owned()], "marathon");
    b.serve(&vips, &[at.parse().unwrap()], weight, "ports[0]");
    b.finish()
}

/// A weight flip keeps the set of names, so the allocator is not asked
/// again (its generation stays); a new name asks it.
#[test]
fn allocator_is_asked_only_when_names_change() {
    let mut inc = IncrementalCatalog::default();
    let mut alloc = VipAllocator::new();
    inc.replace(1, Some(host_part("t1", "/a:80", "10.0.0.1:1", 1)));
    inc.replace(2, Some(host_part("t2", "/a:80", "10.0.0.2:1", 1)));
    inc.catalog(&mut alloc).unwrap();
    let generation = alloc.generation();
    inc.replace(2, Some(host_part("t2", "/a:80", "10.0.0.2:1", 0)));
    let p = inc.catalog(&mut alloc).unwrap();
    assert_eq!(alloc.generation(), generation);
    let spec = p.catalog.services.services.values().next().unwrap();
    assert_eq!(spec.backends.values().copied().collect::<Vec<_>>(), [1, 0]);
    inc.replace(3, Some(host_part("t3", "/b:80", "10.0.0.3:1", 1)));
    assert_eq!(
        inc.catalog(&mut alloc)
            .unwrap()
            .catalog
            .services
            .services
            .len(),
        2
    );
    assert_ne!(alloc.generation(), generation);
}
