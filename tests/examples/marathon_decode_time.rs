//! Where a full `/v2/apps` decode's time goes at N apps x M tasks:
//! `cargo run --release -p l4lb-tests --example marathon_decode_time -- 10000 5 [KIB [services-only]]`
//! (CPU time of each step, ms). The set is refreshed as the agent does it,
//! from the body's chunks uncopied (`refresh_from_pieces`), KIB KiB each (64
//! unless given; the agent's are hyper's reads), keeping task records unless
//! `services-only` is given. Instructions of the refreshes alone:
//! `valgrind --tool=callgrind --toggle-collect='*AppSet*refresh*'` on it;
//! of the first catalog built from the set (`update_catalog`, the agent's
//! next step): `--toggle-collect='*AppSet*update_catalog*'`. Under the agent's
//! allocator (glibc's malloc with the agent's options).
/// This thread's CPU time (the machine is shared: wall time is other load's).
#[derive(Clone, Copy)]
struct Instant(f64);

impl Instant {
    fn now() -> Instant {
        Instant(l4lb_tests::bench_cluster::thread_cpu_s())
    }
}

use l4lb_agent::{
    hosts::HostTable,
    marathon::{
        apps::App,
        decode::AppSet,
        parse::{AppPart, Keep},
        split::AppsSplitter,
    },
    naming::VipAllocator,
};
use l4lb_tests::bench_cluster::marathon_apps;
use serde::Deserialize;

fn body(apps: u32, tasks: u32) -> Vec<u8> {
    serde_json::to_vec(&marathon_apps(apps, tasks)).unwrap()
}

fn ms(t: Instant) -> f64 {
    (Instant::now().0 - t.0) * 1e3
}

fn main() {
    // The agent's allocator options.
    assert!(l4lb_agent::allocator::tune());
    let mut args = std::env::args().skip(1);
    let apps: u32 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let tasks: u32 = args.next().map_or(5, |a| a.parse().unwrap());
    let piece: usize = args.next().map_or(64, |a| a.parse().unwrap()) << 10;
    let keep = match args.next().as_deref() {
        None | Some("records") => Keep::Records,
        Some("packed") => Keep::Packed,
        Some("services-only") => Keep::ServicesOnly,
        Some(other) => panic!("{other:?}: records, packed or services-only"),
    };
    let body = body(apps, tasks);
    for round in 0..3 {
        let t = Instant::now();
        let mut texts = Vec::new();
        let mut split = AppsSplitter::default();
        for piece in body.chunks(64 << 10) {
            split
                .feed(piece, |_, text| {
                    texts.push(text.to_vec());
                    Ok::<(), ()>(())
                })
                .unwrap();
        }
        drop(split.finish());
        let split = ms(t);
        let t = Instant::now();
        let typed: Vec<App> = texts
            .iter()
            .map(|a| serde_json::from_slice(a).unwrap())
            .collect();
        let parse = ms(t);
        let t = Instant::now();
        let parts: Vec<AppPart> = typed.iter().map(|a| AppPart::keeping(a, keep)).collect();
        let part = ms(t);
        drop((texts, typed, parts));
        // The read before the split: serde_json's reader path, each app
        // copied out as a `RawValue` (then parsed again from it).
        #[derive(Deserialize)]
        struct Raw {
            apps: Vec<Box<serde_json::value::RawValue>>,
        }
        let t = Instant::now();
        let raw: Raw = serde_json::from_reader(std::io::BufReader::new(&body[..])).unwrap();
        let reader = ms(t);
        assert_eq!(raw.apps.len(), apps as usize);
        drop(raw);
        let t = Instant::now();
        let mut set = AppSet::keeping(keep);
        set.refresh_from_pieces(body.chunks(piece).map(Ok::<_, std::io::Error>))
            .unwrap();
        let refresh = ms(t);
        let t = Instant::now();
        set.refresh_from_pieces(body.chunks(piece).map(Ok::<_, std::io::Error>))
            .unwrap();
        let again = ms(t);
        let t = Instant::now();
        let first = set.update_catalog(&mut VipAllocator::new(), &HostTable::default());
        let catalog = ms(t);
        drop(first.unwrap());
        println!(
            "round {round}: split {split:.0} (+ a copy of each app), parse each {parse:.0}, \
             AppPart::of {part:.0}; refresh_from_pieces: first {refresh:.0}, same again {again:.0}; \
             its first update_catalog {catalog:.0}; \
             (serde_json's reader path, each app copied out as a RawValue: {reader:.0}) ms"
        );
    }
}
