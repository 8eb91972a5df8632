//! The Maglev fill of a full sync's tables, alone: N services of M members
//! shaped as the benchmarks' (`bench_cluster`: 250 agent hosts, a host port
//! each), each table filled as the apply fills it (`SlotTable::fill`):
//! `cargo run --release -p l4lb-tests --example maglev_fill_time -- 10000 5`
//! (CPU time per round, ms, and a digest of the tables, which a change to
//! the fill must leave as it is).
use std::net::SocketAddr;

use l4lb_agent::{plan::SlotTable, slots::table_size};
use l4lb_tests::bench_cluster::{host_of, port_of, thread_cpu_s as cpu_now};

fn tables(services: u32, members: u32) -> Vec<SlotTable> {
    (0..services)
        .map(|i| {
            let set: Vec<(u32, SocketAddr, u32)> = (0..members)
                .map(|j| {
                    let b = i * members + j;
                    let addr = format!("{}:{}", host_of(b), port_of(b));
                    (b, addr.parse().expect("a socket address"), 1)
                })
                .collect();
            SlotTable::new(table_size(set.len(), 0), set)
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: u32 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let members: u32 = args.next().map_or(5, |a| a.parse().unwrap());
    let tables = tables(services, members);
    for round in 0..3 {
        let start = cpu_now();
        let mut digest = 0u64;
        for t in &tables {
            let filled = std::hint::black_box(t.fill());
            digest = filled
                .iter()
                .fold(digest, |d, &id| d.rotate_left(5) ^ u64::from(id));
        }
        let ms = (cpu_now() - start) * 1e3;
        println!(
            "round {round}: {services} tables filled in {ms:.1} ms CPU, digest {digest:#018x}"
        );
    }
}
