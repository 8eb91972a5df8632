//! Heap held by the full sync's plan at N services x M members (the
//! benchmarks' shape, as `plan_time`), by structure, with a counting
//! allocator: `cargo run --release -p l4lb-tests --example plan_heap --
//! 10000 5`. What the agent keeps after a full sync is the plan's `next`
//! (what the maps hold: services with their members, backends) and the
//! allocation index; the ops are written part by part and freed.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    net::SocketAddr,
    sync::atomic::{AtomicIsize, Ordering::Relaxed},
};

use l4lb_agent::{
    model::{Proto, ServiceMap, ServiceSpec, Vip},
    plan::{Applied, Capacity, Index, Op, plan_all_emitting},
    reconcile::SERVICES_PER_WRITE,
};
use l4lb_tests::bench_cluster::{host_of, port_of};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let n = LIVE.fetch_add(l.size() as isize, Relaxed) + l.size() as isize;
        PEAK.fetch_max(n, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn mb(n: isize) -> f64 {
    n as f64 / 1e6
}

fn live() -> isize {
    LIVE.load(Relaxed)
}

/// Service `i` on 198.18.x.y:80, its members tasks `i * members ..` (as `plan_time`).
fn services(n: u32, members: u32) -> ServiceMap {
    (0..n)
        .map(|i| {
            let vip = Vip {
                addr: SocketAddr::new([198, 18, (i >> 8) as u8, i as u8].into(), 80),
                proto: Proto::Tcp,
            };
            let backends = (0..members)
                .map(|j| {
                    let b = i * members + j;
                    let addr = format!("{}:{}", host_of(b), port_of(b));
                    (addr.parse().expect("a socket address"), 1)
                })
                .collect();
            let spec = ServiceSpec {
                backends,
                ..ServiceSpec::default()
            };
            (vip, spec)
        })
        .collect()
}

/// Live bytes freed by dropping `x`.
fn freed<T>(x: T) -> isize {
    let before = live();
    drop(x);
    before - live()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let members: u32 = args.next().map_or(5, |a| a.parse().unwrap());
    let desired = services(n, members);
    let cap = Capacity {
        slots: 5_046_272,
        ..Capacity::default()
    };
    let before = live();
    PEAK.store(before, Relaxed);
    let applied = Applied::default();
    let mut index = Index::new(&applied, cap);
    let mut write = |_: &[Op]| true;
    let planned = plan_all_emitting(
        &applied,
        &desired,
        &mut index,
        SERVICES_PER_WRITE,
        &mut write,
    );
    let (plan, _) = planned.expect("every part taken");
    println!(
        "plan of {n} services x {members}: held {:.2} MB (peak +{:.2})",
        mb(live() - before),
        mb(PEAK.load(Relaxed) - before)
    );
    let Applied {
        services, backends, ..
    } = plan.next;
    let before_members = live();
    let copies: Vec<_> = services.values().map(|s| s.members.clone()).collect();
    let buffer = (copies.capacity() * std::mem::size_of_val(&copies[0])) as isize;
    let member_bytes = live() - before_members - buffer;
    drop(copies);
    println!(
        "  next.services: {:.2} MB, of which members {:.2} MB",
        mb(freed(services)),
        mb(member_bytes)
    );
    println!("  next.backends: {:.2} MB", mb(freed(backends)));
    println!("  index: {:.2} MB", mb(freed(index)));
}
