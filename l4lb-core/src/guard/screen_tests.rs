//! The screener against [`Guard::screen`] over random sequences: VIPs that
//! sit on other services' backends as those come and go, IPv4-mapped
//! spellings, named and explicit VIPs, and guards that change.
use std::net::SocketAddr;

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::{
    guard::{DEFAULT_VIP_CIDRS, parse_cidr},
    model::{DesiredState, Proto},
};

/// Addresses both VIPs and backends are drawn from, so they collide.
fn ip(i: u8) -> String {
    match i % 7 {
        6 => format!("::ffff:198.18.0.{}", i % 4),
        5 => "127.0.0.1".into(),
        _ => format!("198.18.0.{}", i % 8),
    }
}

fn addr(i: u8, port: u16) -> SocketAddr {
    let ip: IpAddr = ip(i).parse().unwrap();
    SocketAddr::new(ip, port)
}

fn random_spec(rng: &mut StdRng) -> ServiceSpec {
    let backends = (0..rng.random_range(0..4))
        .map(|_| (addr(rng.random_range(0..16), rng.random_range(80..83)), 1))
        .collect();
    ServiceSpec {
        name: rng.random_bool(0.3).then(|| "/named:80".to_owned()),
        framework: None,
        origin: Some(format!("app /{}", rng.random_range(0..5))),
        backends,
    }
}

fn guard(rng: &mut StdRng) -> Guard {
    let cidrs = match rng.random_bool(0.5) {
        true => DEFAULT_VIP_CIDRS
            .iter()
            .map(|c| parse_cidr(c).unwrap())
            .collect(),
        false => vec![parse_cidr("198.18.0.0/30").unwrap()],
    };
    let mut g = Guard::new(cidrs);
    if rng.random_bool(0.5) {
        g.protect(
            ip(rng.random_range(0..8)).parse().unwrap(),
            "an address of this node",
        );
    }
    g
}

#[test]
fn the_screener_refuses_what_the_guard_refuses() {
    let mut followed = 0;
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut screener, mut map, mut g) =
            (Screener::default(), ServiceMap::new(), guard(&mut rng));
        for step in 0..40 {
            for _ in 0..rng.random_range(1..4) {
                let vip = Vip {
                    addr: addr(rng.random_range(0..16), 80),
                    proto: if rng.random_bool(0.5) {
                        Proto::Tcp
                    } else {
                        Proto::Udp
                    },
                };
                match rng.random_bool(0.3) {
                    true => drop(map.remove(&vip)),
                    false => drop(map.insert(vip, random_spec(&mut rng))),
                }
            }
            if rng.random_bool(0.1) {
                g = guard(&mut rng);
            } else {
                followed += 1;
            }
            let mut state = DesiredState {
                services: map.iter().map(|(v, s)| (*v, s.clone())).collect(),
            };
            let want = g.screen(&mut state);
            let (kept, refused) = screener.screen(&g, &map);
            let at = format!("seed {seed} step {step}");
            assert_eq!(refused, want, "{at}");
            assert!(kept.iter().eq(state.services.iter()), "{at}");
        }
    }
    assert!(followed > 6000, "{followed}");
}

#[test]
fn a_vip_is_refused_when_another_service_puts_a_backend_on_it_and_back() {
    let g = Guard::new(vec![parse_cidr("0.0.0.0/0").unwrap()]);
    let vip = Vip {
        addr: "198.18.0.1:80".parse().unwrap(),
        proto: Proto::Tcp,
    };
    let other = Vip {
        addr: "198.18.0.2:80".parse().unwrap(),
        proto: Proto::Tcp,
    };
    let on = |b: &str| ServiceSpec {
        backends: [(b.parse().unwrap(), 1)].into(),
        ..Default::default()
    };
    let mut s = Screener::default();
    let mut map = ServiceMap::new();
    map.insert(vip, on("198.18.0.9:80"));
    map.insert(other, on("198.18.0.8:80"));
    assert!(s.screen(&g, &map).1.is_empty());
    map.insert(other, on("198.18.0.1:8080"));
    let (kept, refused) = s.screen(&g, &map);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].reason.contains("backend's address"),
        "{}",
        refused[0]
    );
    assert!(!kept.contains_key(&vip) && kept.contains_key(&other));
    map.insert(other, on("198.18.0.8:80"));
    assert!(s.screen(&g, &map).1.is_empty());
}
