//! Heap held by the Marathon source's state at N apps x M tasks (the bench's
//! shape), by stage, with a counting allocator: `cargo run --release -p
//! l4lb-tests --example marathon_heap -- 10000 5 [records|packed|services-only]`
//! (what the set keeps of each task, `Keep`; records unless given).
use l4lb_agent::{
    hosts::HostTable,
    marathon::{decode::AppSet, parse::Keep},
    naming::VipAllocator,
};
use l4lb_tests::bench_cluster::marathon_apps;

#[path = "common/counting.rs"]
mod counting;
#[path = "common/plan_empty.rs"]
mod plan_empty;

use counting::{allocs, live, mark_peak, mb, peak};

fn main() {
    let mut args = std::env::args().skip(1);
    let apps: u32 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let tasks: u32 = args.next().map_or(5, |a| a.parse().unwrap());
    let keep = match args.next().as_deref() {
        None | Some("records") => Keep::Records,
        Some("packed") => Keep::Packed,
        Some("services-only") => Keep::ServicesOnly,
        Some(other) => panic!("{other:?}: records, packed or services-only"),
    };
    let body = serde_json::to_vec(&marathon_apps(apps, tasks)).unwrap();
    let base = live();
    println!(
        "body {:.1} MB; a TaskRecord {} B inline (+16 its Arc), a TaskPort {} B",
        mb(body.len() as isize),
        std::mem::size_of::<l4lb_agent::model::TaskRecord>(),
        std::mem::size_of::<l4lb_agent::model::TaskPort>()
    );
    mark_peak(base);
    println!("the set keeps {keep:?}");
    let mut set = AppSet::keeping(keep);
    let t = std::time::Instant::now();
    let calls = allocs();
    set.refresh_from_slice(&body).unwrap();
    let decoded = live() - base;
    println!(
        "refresh: held {:.1} MB (peak {:.1}), {:.0} ms, {}",
        mb(decoded),
        mb(peak() - base),
        t.elapsed().as_secs_f64() * 1e3,
        per(allocs() - calls, apps, tasks)
    );
    let mut alloc = VipAllocator::new();
    let t = std::time::Instant::now();
    let calls = allocs();
    let p = set
        .update_catalog(&mut alloc, &HostTable::default())
        .unwrap();
    let with_cat = live() - base;
    println!(
        "update_catalog: +{:.1} MB held (set + result), peak {:.1}, {:.0} ms, {}",
        mb(with_cat - decoded),
        mb(peak() - base),
        t.elapsed().as_secs_f64() * 1e3,
        per(allocs() - calls, apps, tasks)
    );
    let services = p.services.clone().unwrap();
    let screener = screen_stage(&services);
    let records = unpack_stage(&p.catalog);
    zones_stage(&records, &services);
    drop(records);
    let held = live();
    drop(p);
    println!(
        "  of which the catalog (tasks, hosts, warnings) freed with it: {:.1} MB",
        mb(held - live())
    );
    plan_stage(&services);
    let filled = live();
    let copy = l4lb_agent::model::desired_state(&services);
    println!(
        "the catalog's services for DNS and the HTTP API (shares the map): {:.1} MB",
        mb(live() - filled)
    );
    drop(copy);
    let t = std::time::Instant::now();
    let before = live();
    let full = set.catalog(&mut VipAllocator::new()).unwrap();
    println!(
        "a full build's result: {:.1} MB, {:.0} ms",
        mb(live() - before),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(full);
    let before = live();
    mark_peak(before);
    let t = std::time::Instant::now();
    set.refresh_from_slice(&body).unwrap();
    println!(
        "re-read of the same body: peak +{:.1} MB, {:.0} ms",
        mb(peak() - before),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(services);
    drop(screener);
    println!("set alone: {:.1} MB", mb(live() - base));
}

/// The guard's screen of the catalog's services (the agent keeps its
/// screener from one catalog to the next): what the screener holds of its
/// own (the services it keeps share the catalog's map).
fn screen_stage(services: &l4lb_agent::model::ServiceMap) -> l4lb_agent::guard::Screener {
    use l4lb_agent::guard::{DEFAULT_VIP_CIDRS, Guard, Screener, parse_cidr};
    let cidrs = DEFAULT_VIP_CIDRS.iter().map(|c| parse_cidr(c).unwrap());
    let guard = Guard::new(cidrs.collect());
    let before = live();
    mark_peak(before);
    let mut screener = Screener::default();
    let (kept, refused) = screener.screen(&guard, services);
    drop((kept, refused));
    println!(
        "guard screen: the screener holds {:.2} MB (peak +{:.2})",
        mb(live() - before),
        mb(peak() - before)
    );
    screener
}

/// `n` allocations, and per app and per task.
fn per(n: isize, apps: u32, tasks: u32) -> String {
    let per_app = n as f64 / f64::from(apps);
    let per_task = per_app / f64::from(tasks);
    format!("{n} allocations ({per_app:.1} an app, {per_task:.1} a task)")
}

/// The full sync's plan of `services` against empty maps: what it holds
/// until it is written, and its peak while built.
fn plan_stage(services: &l4lb_agent::model::ServiceMap) {
    use l4lb_agent::plan::{Applied, plan_all};
    let before = live();
    mark_peak(before);
    let t = std::time::Instant::now();
    let plan = plan_all(&Applied::default(), services, plan_empty::capacity());
    let ops = plan.now.len() + plan.after_grace.len();
    println!(
        "plan_all: {ops} ops, held {:.1} MB (peak +{:.1}), {:.0} ms",
        mb(live() - before),
        mb(peak() - before),
        t.elapsed().as_secs_f64() * 1e3
    );
    let next = plan.next.clone();
    let with_next = live();
    drop(plan);
    println!(
        "  of which the ops (freed once written): {:.1} MB; `next` (kept): {:.1} MB",
        mb(with_next - live()),
        mb(live() - before)
    );
    drop(next);
    let before = live();
    mark_peak(before);
    let every = l4lb_agent::reconcile::SERVICES_PER_WRITE;
    let mut parts = 0;
    let (plan, _index, ops) = plan_empty::plan_from_empty(services, &mut |_| {
        parts += 1;
        true
    });
    println!(
        "plan_all_emitting ({every} services a part, {parts} parts, {ops} ops): held {:.1} MB (peak +{:.1})",
        mb(live() - before),
        mb(peak() - before),
    );
    drop(plan);
}

/// The catalog's records as a reader gets them: unpacked (what the
/// discovery API does per request) when the set keeps them packed.
fn unpack_stage(
    catalog: &l4lb_agent::model::Catalog,
) -> std::sync::Arc<l4lb_agent::model::Catalog> {
    if catalog.packed.is_empty() {
        return std::sync::Arc::new(catalog.clone());
    }
    let packed: usize = catalog.packed.iter().map(|p| p.len()).sum();
    let before = live();
    mark_peak(before);
    let t = std::time::Instant::now();
    let (unpacked, skipped) = catalog.unpacked();
    println!(
        "packed records: {} parts, {:.1} MB of bytes ({:.0} B a task); unpacked in {:.0} ms: {} records, {:.1} MB (peak +{:.1}), {skipped} parts skipped",
        catalog.packed.len(),
        mb(packed as isize),
        packed as f64 / unpacked.tasks.len().max(1) as f64,
        t.elapsed().as_secs_f64() * 1e3,
        unpacked.tasks.len(),
        mb(live() - before),
        mb(peak() - before),
    );
    std::sync::Arc::new(unpacked)
}

/// The DNS zones the agent serves for that catalog (its `ZoneIndex` and the
/// zones it hands the server): held beside the catalog for as long as it is.
fn zones_stage(catalog: &l4lb_agent::model::Catalog, services: &l4lb_agent::model::ServiceMap) {
    use l4lb_agent::dns::{ZoneIndex, ZoneOptions};
    let before = live();
    mark_peak(before);
    let t = std::time::Instant::now();
    let published = services.keys().copied().collect();
    let mut index = ZoneIndex::new(ZoneOptions::default());
    let zones = index.update(catalog, &published);
    println!(
        "DNS zones ({} records): index + zones held {:.1} MB (peak +{:.1}), {:.0} ms",
        zones.record_count(),
        mb(live() - before),
        mb(peak() - before),
        t.elapsed().as_secs_f64() * 1e3
    );
    zones_shape(&zones);
}

/// What the zones hold: names, values per name, SRV values, name lengths
/// (what a representation of the nodes is chosen by).
fn zones_shape(zones: &l4lb_agent::dns::Zones) {
    use hickory_proto::rr::RecordType;
    let mut per_name = std::collections::BTreeMap::<usize, usize>::new();
    let (mut names, mut srvs, mut name_bytes) = (0usize, 0usize, 0usize);
    for zone in zones.zones() {
        for (name, records) in zone.iter() {
            names += 1;
            name_bytes += name.to_name().len();
            *per_name.entry(records.len()).or_default() += 1;
            let srv = records
                .iter()
                .filter(|r| r.record_type() == RecordType::SRV);
            srvs += srv.count();
        }
    }
    let hist: Vec<String> = per_name.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!(
        "  {names} names (values per name: {}), {srvs} SRV values, {:.1} bytes a name",
        hist.join(", "),
        name_bytes as f64 / names as f64
    );
}
