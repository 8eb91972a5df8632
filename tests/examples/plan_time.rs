//! The full sync's plan alone, as the reconciler runs it on a fresh start:
//! N services of M members shaped as the benchmarks' (`bench_cluster`: 250
//! agent hosts, a host port each) planned from empty maps by
//! `plan_all_emitting`, its parts handed to a writer that only digests them:
//! `cargo run --release -p l4lb-tests --example plan_time -- 10000 5`
//! (CPU time per round, ms, and a digest of the ops, which a change to the
//! plan must leave as it is). Under callgrind:
//! `valgrind --tool=callgrind --toggle-collect='*plan_all_emitting*' ...`.
use l4lb_agent::plan::Op;
use l4lb_tests::bench_cluster::thread_cpu_s as cpu_now;

#[path = "common/plan_empty.rs"]
mod plan_empty;
#[path = "common/plan_shape.rs"]
mod plan_shape;

use plan_empty::plan_from_empty;
use plan_shape::services;

/// Folds an op into a digest: its kind and the ids and values it writes.
fn digest(d: u64, op: &Op) -> u64 {
    let words: [u64; 3] = match op {
        Op::PutBackend(id, b) => [1, u64::from(*id), u64::from(b.port)],
        Op::ResetBackendStats(id) => [2, u64::from(*id), 0],
        Op::ResetServiceStats(id) => [3, u64::from(*id), 0],
        Op::WriteSlots { base, table } => [4, u64::from(*base), u64::from(table.size)],
        Op::PutMember(k, w) => [
            5,
            u64::from(k.service_id) << 32 | u64::from(k.backend_id),
            u64::from(*w),
        ],
        Op::DelMember(k) => [
            6,
            u64::from(k.service_id) << 32 | u64::from(k.backend_id),
            0,
        ],
        Op::PutService(_, v) => [
            7,
            u64::from(v.id) << 32 | u64::from(v.slot_base),
            u64::from(v.slot_count),
        ],
        Op::DelService(_) => [8, 0, 0],
        Op::DelBackend(id) => [9, u64::from(*id), 0],
    };
    words
        .iter()
        .fold(d, |d, w| (d ^ w).wrapping_mul(0x100_0000_01b3))
}

fn main() {
    // The agent's allocator options.
    assert!(l4lb_agent::allocator::tune());
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let members: u32 = args.next().map_or(5, |a| a.parse().unwrap());
    let rounds: u32 = args.next().map_or(3, |a| a.parse().unwrap());
    let desired = services(n, members);
    for round in 0..rounds {
        let start = cpu_now();
        let (mut ops, mut d) = (0usize, 0xcbf2_9ce4_8422_2325u64);
        let mut write = |part: &[Op]| {
            ops += part.len();
            d = part.iter().fold(d, digest);
            true
        };
        let (plan, ..) = plan_from_empty(&desired, &mut write);
        let ms = (cpu_now() - start) * 1e3;
        let next = (plan.next.services.len(), plan.next.backends.len());
        drop(plan);
        println!(
            "round {round}: {n} services planned in {ms:.1} ms CPU, {ops} ops, next {next:?}, digest {d:#018x}"
        );
    }
}
