//! The Marathon client's response handling, fed arbitrary answers: the
//! redirect and leader decisions of `marathon::origin` driven the way
//! `client::MarathonClient::get`/`with_candidates` drive them, and the capped
//! body readers of `marathon::body` over arbitrary chunks. Checks:
//! - credentials only ever go to a configured origin: every URL a request is
//!   sent to (first try, or redirect followed) is one;
//! - a leader is pinned only after a 2xx from it (the root of a URL that
//!   answered 2xx), and any failure of the URL tried first drops it;
//! - `read_capped` returns the body exactly when it fits the cap and matches
//!   the announced length, never more than the cap;
//! - `error_snippet` pulls at most 64 KiB (plus one chunk) of an error body
//!   and quotes at most 256 bytes.
#![no_main]

use std::{collections::HashSet, sync::OnceLock};

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use l4lb_fuzz::marathon::{
    body::{self, BodyError},
    origin::{Leader, MAX_REDIRECTS, Trusted, redirect_target, root},
};
use libfuzzer_sys::{arbitrary::Unstructured, fuzz_target};
use url::Url;

/// Configured URLs, then hosts the operator did not name.
const URLS: &[&str] = &[
    "http://m1:8080/",
    "https://m2/marathon/",
    "http://10.0.0.3:8080/",
    "http://m1:8081/",
    "https://m1:8080/",
    "http://evil/",
];
const CONFIGURED: usize = 3;
/// Location values the fuzzer picks from, besides arbitrary bytes.
const LOCATIONS: &[&str] = &[
    "/v2/events",
    "http://m1:8080/v2/apps",
    "http://10.0.0.3:8080/v2/events?event_type=x",
    "https://m2/v2/apps",
    "//evil/v2/apps",
    "http://m1:8081/",
    "ftp://m1:8080/",
];

static XS: [u8; 4096] = [b'x'; 4096];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

fn urls() -> &'static [Url] {
    static U: OnceLock<Vec<Url>> = OnceLock::new();
    U.get_or_init(|| URLS.iter().map(|u| Url::parse(u).unwrap()).collect())
}

/// One request as the client makes it: the leader first (if any), else a
/// configured URL; answers until a 2xx, a failure or a refused redirect.
fn request(
    u: &mut Unstructured,
    leader: &mut Leader,
    trusted: &Trusted,
    ok_roots: &mut HashSet<Url>,
) {
    let configured = &urls()[..CONFIGURED];
    let base = match (leader.first(), u.int_in_range(0..=CONFIGURED).unwrap_or(0)) {
        (Some(l), _) => l.clone(),
        (None, i) => configured[i % CONFIGURED].clone(),
    };
    let mut url = base.clone();
    for hops in 1..=MAX_REDIRECTS + 2 {
        assert!(trusted.allows(&url), "credentials sent to {url}");
        let status: u16 = u.int_in_range(100..=599).unwrap_or(200);
        if (200..300).contains(&status) {
            ok_roots.insert(root(&url));
            if let Some(pinned) = leader.answered(&base, &url) {
                assert_eq!(pinned, root(&url));
            }
            return;
        }
        if !(300..400).contains(&status) || status == 304 {
            break;
        }
        let loc: Vec<u8> = match u.int_in_range(0..=LOCATIONS.len()).unwrap_or(0) {
            i if i < LOCATIONS.len() => LOCATIONS[i].as_bytes().to_vec(),
            _ => u.arbitrary().unwrap_or_default(),
        };
        let has_loc: bool = u.arbitrary().unwrap_or(true);
        match redirect_target(
            &url,
            status,
            has_loc.then_some(loc.as_slice()),
            hops,
            trusted,
        ) {
            Ok(next) => {
                assert!(matches!(next.scheme(), "http" | "https"));
                assert!(!(url.scheme() == "https" && next.scheme() == "http"));
                url = next;
            }
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
    }
    let was_first = leader.first() == Some(&base);
    assert_eq!(leader.failed(&base), was_first);
    if was_first {
        assert_eq!(leader.first(), None, "a failed leader is still tried first");
    }
}

fn leader_steps(u: &mut Unstructured) {
    let trusted = Trusted::new(&urls()[..CONFIGURED]);
    let mut leader = Leader::default();
    let mut ok_roots = HashSet::new();
    for _ in 0..u.int_in_range(0..=24u8).unwrap_or(0) {
        match u.int_in_range(0..=3u8).unwrap_or(0) {
            0 => {
                // `/v2/leader` named a host: the client only passes trusted ones.
                let named = &urls()[u.int_in_range(0..=URLS.len() - 1).unwrap_or(0)];
                if trusted.allows(named) {
                    let pinned = leader.pinned().cloned();
                    leader.named(root(named));
                    assert_eq!(leader.pinned(), pinned.as_ref(), "named pinned");
                }
            }
            1 => leader.none(),
            _ => request(u, &mut leader, &trusted, &mut ok_roots),
        }
        if let Some(p) = leader.pinned() {
            assert!(ok_roots.contains(p), "{p} pinned without a 2xx");
            assert!(trusted.allows(p));
        }
        if let Some(f) = leader.first() {
            assert!(trusted.allows(f), "{f} tried first");
        }
    }
}

fn bodies(u: &mut Unstructured) {
    let limit = u.int_in_range(0..=512usize).unwrap_or(0);
    let announced: Option<u64> = u.arbitrary::<Option<u16>>().unwrap_or(None).map(u64::from);
    let chunks: Vec<Vec<u8>> = u.arbitrary().unwrap_or_default();
    let broken: bool = u.arbitrary().unwrap_or(false);
    let whole: Vec<u8> = chunks.concat();
    let mut items: Vec<Result<Bytes, String>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    if broken {
        items.push(Err("reset".into()));
    }
    let got = runtime().block_on(body::read_capped(
        stream::iter(items.clone()),
        announced,
        limit,
    ));
    let over = announced.is_some_and(|n| n > limit as u64);
    match got {
        Ok(b) => {
            assert!(!over && !broken && b.len() <= limit);
            assert_eq!(&b[..], &whole[..]);
            assert!(announced.is_none_or(|n| n == whole.len() as u64));
        }
        Err(BodyError::TooLarge(l)) => {
            assert_eq!(l, limit);
            assert!(over || whole.len() > limit);
        }
        Err(BodyError::Short { got, announced: n }) => {
            assert!(!broken && got == whole.len() && Some(n) == announced && n != got as u64);
        }
        Err(BodyError::Transport(_)) => assert!(broken),
    }
    // The error snippet over the same chunks, repeated without end.
    let pulled = std::cell::Cell::new(0usize);
    let max_chunk = chunks.iter().map(Vec::len).max().unwrap_or(0).max(XS.len());
    let endless = stream::iter(items)
        .chain(stream::repeat_with(|| Ok(Bytes::from_static(&XS))))
        .inspect(|c: &Result<Bytes, String>| {
            pulled.set(pulled.get() + c.as_ref().map_or(0, Bytes::len));
        });
    let snippet = runtime().block_on(body::error_snippet(endless));
    assert!(
        snippet.len() <= body::ERROR_SNIPPET * 3,
        "{} bytes quoted",
        snippet.len()
    );
    assert!(
        pulled.get() <= body::ERROR_BODY_MAX + max_chunk.max(1),
        "{} bytes read",
        pulled.get()
    );
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    leader_steps(&mut u);
    bodies(&mut u);
});
