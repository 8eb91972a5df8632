//! The full read's per-app typed parse, serde_json against sonic-rs and
//! simd-json (session 24, BENCHMARKS.md; measured, not kept):
//! `cargo run --release -p l4lb-core --example json_parsers_ab -- BODY [ROUNDS [ONLY]]`
//! on a `/v2/apps` body in a file (the bench's: `serde_json::to_vec` of
//! `l4lb_tests::bench_cluster::marathon_apps(10000, 5)`). Prints each
//! variant's thread CPU / wall ms per round; ONLY runs one variant, for
//! `valgrind --tool=callgrind --toggle-collect='*ab_ONLY*'`.
use l4lb_core::marathon::{apps::App, split::AppsSplitter};

fn cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[inline(never)]
fn ab_serde_json(texts: &[&[u8]]) -> usize {
    texts
        .iter()
        .map(|t| serde_json::from_slice::<App>(t).unwrap().tasks.len())
        .sum()
}

#[inline(never)]
fn ab_serde_json_whole(body: &[u8], starts: &[usize], piece: usize) -> usize {
    starts
        .iter()
        .map(|&s| {
            let rest = &body[s..(s + piece).min(body.len())];
            let mut it = serde_json::Deserializer::from_slice(rest).into_iter::<App>();
            let n = it.next().unwrap().unwrap().tasks.len();
            std::hint::black_box(it.byte_offset());
            n
        })
        .sum()
}

#[inline(never)]
fn ab_sonic(texts: &[&[u8]]) -> usize {
    texts
        .iter()
        .map(|t| sonic_rs::from_slice::<App>(t).unwrap().tasks.len())
        .sum()
}

/// From the rest of the piece: skip to find the end (unchecked), then parse
/// that text (the piece's UTF-8 checked once up front).
#[inline(never)]
fn ab_sonic_whole(body: &[u8], starts: &[usize], texts: &[&[u8]], piece: usize) -> usize {
    let mut n = 0;
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let end = (at + piece).min(body.len());
        let valid = match std::str::from_utf8(&body[at..end]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&body[at..at + e.valid_up_to()]).unwrap(),
        };
        while i < starts.len() && starts[i] < at + valid.len() {
            let rest = &valid[starts[i] - at..];
            let mut p = sonic_rs::parser::Parser::new(sonic_rs::Read::from(rest));
            match p.skip_one(false) {
                Ok((raw, _)) => {
                    // SAFETY: a slice of `valid`, at a value's bounds.
                    let s = unsafe { std::str::from_utf8_unchecked(raw) };
                    n += sonic_rs::from_str::<App>(s).unwrap().tasks.len();
                }
                Err(_) => n += sonic_rs::from_slice::<App>(texts[i]).unwrap().tasks.len(),
            }
            i += 1;
        }
        at += valid.len();
    }
    n
}

#[inline(never)]
fn ab_simd(texts: &[&[u8]]) -> usize {
    let mut buf = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    texts
        .iter()
        .map(|t| {
            buf.clear();
            buf.extend_from_slice(t);
            simd_json::serde::from_slice_with_buffers::<App>(&mut buf, &mut buffers)
                .unwrap()
                .tasks
                .len()
        })
        .sum()
}

/// Floors: each app into the parser's own DOM (no typed decode at all).
#[inline(never)]
fn ab_sonic_dom(texts: &[&[u8]]) -> usize {
    use sonic_rs::JsonContainerTrait;
    texts
        .iter()
        .map(|t| {
            sonic_rs::from_slice::<sonic_rs::Value>(t)
                .unwrap()
                .as_object()
                .unwrap()
                .len()
        })
        .sum()
}

/// sonic's DOM, then the typed app read from it through serde.
#[inline(never)]
fn ab_sonic_dom_typed(texts: &[&[u8]]) -> usize {
    texts
        .iter()
        .map(|t| {
            let v = sonic_rs::from_slice::<sonic_rs::Value>(t).unwrap();
            sonic_rs::from_value::<App>(&v).unwrap().tasks.len()
        })
        .sum()
}

#[inline(never)]
fn ab_simd_dom(texts: &[&[u8]]) -> usize {
    let mut buf = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    texts
        .iter()
        .map(|t| {
            buf.clear();
            buf.extend_from_slice(t);
            let v = simd_json::to_borrowed_value_with_buffers(&mut buf, &mut buffers).unwrap();
            std::hint::black_box(&v);
            1
        })
        .sum()
}

#[inline(never)]
fn ab_serde_json_dom(texts: &[&[u8]]) -> usize {
    texts
        .iter()
        .map(|t| {
            serde_json::from_slice::<serde_json::Value>(t)
                .unwrap()
                .as_object()
                .unwrap()
                .len()
        })
        .sum()
}

#[inline(never)]
fn ab_scan(body: &[u8]) -> usize {
    let mut n = 0;
    let mut split = AppsSplitter::default();
    for piece in body.chunks(408 << 10) {
        split
            .feed(piece, |_, t| {
                n += t.len();
                Ok::<(), ()>(())
            })
            .unwrap();
    }
    drop(split.finish());
    n
}

fn main() {
    let mut a = std::env::args().skip(1);
    let body = std::fs::read(a.next().unwrap()).unwrap();
    let rounds: usize = a.next().map_or(3, |r| r.parse().unwrap());
    let only = a.next();
    let mut texts: Vec<&[u8]> = Vec::new();
    let mut split = AppsSplitter::default();
    // The body is fed whole: every text is a slice of it.
    let mut spans = Vec::new();
    split
        .feed(&body, |_, t| {
            spans.push((t.as_ptr() as usize - body.as_ptr() as usize, t.len()));
            Ok::<(), ()>(())
        })
        .unwrap();
    for &(s, l) in &spans {
        texts.push(&body[s..s + l]);
    }
    let starts: Vec<usize> = spans.iter().map(|s| s.0).collect();
    // Same apps from every parser.
    for t in texts.iter().take(200) {
        let a: App = serde_json::from_slice(t).unwrap();
        assert_eq!(a, sonic_rs::from_slice::<App>(t).unwrap());
        let mut c = t.to_vec();
        assert_eq!(a, simd_json::serde::from_slice::<App>(&mut c).unwrap());
        let v = sonic_rs::from_slice::<sonic_rs::Value>(t).unwrap();
        assert_eq!(a, sonic_rs::from_value::<App>(&v).unwrap());
    }
    let piece = 408 << 10;
    for r in 0..rounds {
        let mut line = format!("round {r}:");
        let runs: [(&str, &dyn Fn() -> usize); 10] = [
            ("sonic_dom_typed", &|| ab_sonic_dom_typed(&texts)),
            ("serde_json_dom", &|| ab_serde_json_dom(&texts)),
            ("sonic_dom", &|| ab_sonic_dom(&texts)),
            ("simd_dom", &|| ab_simd_dom(&texts)),
            ("serde_json", &|| ab_serde_json(&texts)),
            ("serde_json_whole", &|| {
                ab_serde_json_whole(&body, &starts, piece)
            }),
            ("sonic", &|| ab_sonic(&texts)),
            ("sonic_whole", &|| {
                ab_sonic_whole(&body, &starts, &texts, piece)
            }),
            ("simd_json", &|| ab_simd(&texts)),
            ("scan", &|| ab_scan(&body)),
        ];
        for (name, f) in runs {
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let (c, w) = (cpu(), std::time::Instant::now());
            let n = f();
            line += &format!(
                " {name} {:.1}/{:.1}ms",
                (cpu() - c) * 1e3,
                w.elapsed().as_secs_f64() * 1e3
            );
            std::hint::black_box(n);
        }
        println!("{line}");
    }
}
