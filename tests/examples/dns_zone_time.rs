//! Time of the DNS zone build the agent runs for a Marathon catalog of N apps
//! x M tasks (the bench's shape), under the agent's allocator: the first
//! build from an empty index, then a rebuild of the same catalog from empty
//! and an update with nothing changed. `cargo run --release -p l4lb-tests
//! --example dns_zone_time -- 10000 5 [rounds]` (`L4LB_BODY`: see [`body`]).
use std::{
    collections::BTreeSet,
    hash::{Hash, Hasher},
    time::Instant,
};

use l4lb_agent::{
    dns::{ZoneIndex, ZoneOptions},
    hosts::HostTable,
    marathon::decode::AppSet,
    model::Vip,
    naming::VipAllocator,
};
use l4lb_tests::bench_cluster::marathon_apps;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The bench's `/v2/apps` body. Its task ids and times are new on each
/// call, so a comparison of digests keeps one: with `L4LB_BODY=<file>`, the
/// file's body when it exists, else a new one written there.
fn body(apps: u32, tasks: u32) -> Vec<u8> {
    let path = std::env::var_os("L4LB_BODY");
    if let Some(b) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
        return b;
    }
    let body = serde_json::to_vec(&marathon_apps(apps, tasks)).expect("serializable");
    if let Some(p) = path {
        std::fs::write(p, &body).expect("the body file is writable");
    }
    body
}

/// Every record of every zone, in the zones' order: equal digests before
/// and after a change of the build say it built the same zones.
fn digest(zones: &l4lb_agent::dns::Zones) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for zone in zones.zones() {
        for (_, records) in zone.iter() {
            records.iter().for_each(|r| r.to_string().hash(&mut h));
        }
    }
    h.finish()
}

fn main() {
    // The agent's allocator options.
    assert!(l4lb_agent::allocator::tune());
    let mut args = std::env::args().skip(1);
    let mut arg = |d: u32| args.next().map_or(d, |a| a.parse().expect("a number"));
    let (apps, tasks, rounds) = (arg(10_000), arg(5), arg(3));
    let body = body(apps, tasks);
    let mut set = AppSet::default();
    set.refresh_from_slice(&body)
        .expect("the bench's body decodes");
    let part = set
        .update_catalog(&mut VipAllocator::new(), &HostTable::default())
        .expect("a catalog");
    let published: BTreeSet<Vip> = part.catalog.services.services.keys().copied().collect();
    for round in 1..=rounds {
        let mut index = ZoneIndex::new(ZoneOptions::default());
        let t = Instant::now();
        let zones = index.update_at(&part.catalog, &published, 1);
        let first = ms(t);
        let t = Instant::now();
        let again = index.update_at(&part.catalog, &published, 1);
        let unchanged = ms(t);
        println!(
            "round {round}: first build {first:.0} ms ({} records, digest {:016x}), unchanged update {unchanged:.1} ms",
            zones.record_count(),
            digest(&zones),
        );
        drop((zones, again));
    }
}
