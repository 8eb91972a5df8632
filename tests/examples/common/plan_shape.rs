//! The desired services the plan examples start from: the benchmarks'
//! shape (`bench_cluster`: 250 agent hosts, a host port each). Included
//! with `#[path]` (not an example itself).
use std::net::SocketAddr;

use l4lb_agent::model::{Proto, ServiceMap, ServiceSpec, Vip};
use l4lb_tests::bench_cluster::{host_of, port_of};

/// Service `i` on 198.18.x.y:80, its members tasks `i * members ..`.
pub fn services(n: u32, members: u32) -> ServiceMap {
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
