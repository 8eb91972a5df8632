//! Heap held by the full sync's plan at N services x M members (the
//! benchmarks' shape, as `plan_time`), by structure, with a counting
//! allocator: `cargo run --release -p l4lb-tests --example plan_heap --
//! 10000 5`. What the agent keeps after a full sync is the plan's `next`
//! (what the maps hold: services with their members, backends) and the
//! allocation index; the ops are written part by part and freed.
use l4lb_agent::plan::{Applied, Op};

#[path = "common/counting.rs"]
mod counting;
#[path = "common/plan_empty.rs"]
mod plan_empty;
#[path = "common/plan_shape.rs"]
mod plan_shape;

use counting::{live, mark_peak, mb, peak};
use plan_empty::plan_from_empty;
use plan_shape::services;

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
    let before = live();
    mark_peak(before);
    let (plan, index, _) = plan_from_empty(&desired, &mut |_: &[Op]| true);
    println!(
        "plan of {n} services x {members}: held {:.2} MB (peak +{:.2})",
        mb(live() - before),
        mb(peak() - before)
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
