//! Arbitrary bytes as a DNS query, through the exact function the UDP and TCP
//! listeners call. Checks, beyond "no panic": a reply parses, is a response,
//! carries the query's id, and fits the size it was allowed; and the UDP
//! listener's reply cache, warmed by the query, answers the query with its
//! letters' case flipped as a fresh reply does (answer order aside).
#![no_main]

use std::sync::{Arc, OnceLock};

use hickory_proto::{
    op::{Message, MessageType},
    rr::Record,
};
use l4lb_fuzz::dns::{
    answer::{Reply, ReplyOpts, respond},
    records::{ZoneOptions, Zones, build_zones},
    reply_cache::{ReplyCache, VARIANTS},
};
use libfuzzer_sys::fuzz_target;

fn zones() -> &'static Arc<Zones> {
    static Z: OnceLock<Arc<Zones>> = OnceLock::new();
    Z.get_or_init(|| {
        let (catalog, published) = l4lb_fuzz::sample_catalog(60);
        Arc::new(build_zones(&catalog, &published, &ZoneOptions::default()))
    })
}

/// `data` with the ASCII letters after the header in the other case.
fn flip_case(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for b in out.iter_mut().skip(12) {
        if b.is_ascii_alphabetic() {
            *b ^= 0x20;
        }
    }
    out
}

/// What a client reads in a reply, answer order aside and, beyond the
/// question, names compared without case (a cached reply's names that point
/// into the question take the asker's case: equal names, RFC 4343).
fn read(bytes: &[u8]) -> String {
    let m = Message::from_vec(bytes).expect("our reply parses");
    let sorted = |rs: &[Record]| {
        let mut v: Vec<String> = rs
            .iter()
            .map(|r| r.to_string().to_ascii_lowercase())
            .collect();
        v.sort();
        v
    };
    let (answers, additionals) = (sorted(m.answers()), sorted(m.additionals()));
    let authority = sorted(m.name_servers());
    format!(
        "{:?} {:?} {answers:?} {additionals:?} {authority:?}",
        m.header(),
        m.queries()
    )
}

fn cache_agrees(data: &[u8], opts: &ReplyOpts) {
    let mut cache = ReplyCache::default();
    for _ in 0..VARIANTS {
        cache.reply(zones(), data, opts);
    }
    let flipped = flip_case(data);
    let (hit, fresh) = (
        cache.reply(zones(), &flipped, opts),
        respond(zones(), &flipped, opts),
    );
    match (hit, fresh) {
        (
            Reply::Send {
                bytes: a,
                rcode: ra,
                ..
            },
            Reply::Send {
                bytes: b,
                rcode: rb,
                ..
            },
        ) => {
            assert_eq!(ra, rb);
            assert_eq!(read(&a), read(&b), "cached and fresh replies differ");
        }
        (Reply::Forward, Reply::Forward) | (Reply::Drop, Reply::Drop) => {}
        (a, b) => panic!("cached {a:?}, fresh {b:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    for (opts, limit) in [
        (ReplyOpts::default(), 1232),
        (
            ReplyOpts {
                tcp: true,
                ..ReplyOpts::default()
            },
            65535,
        ),
        (
            ReplyOpts {
                forward: true,
                ..ReplyOpts::default()
            },
            1232,
        ),
    ] {
        match respond(zones(), data, &opts) {
            Reply::Send { bytes, .. } => {
                assert!(bytes.len() <= limit, "{} bytes over {limit}", bytes.len());
                assert_eq!(bytes[..2], data[..2], "id not echoed");
                let m = Message::from_vec(&bytes).expect("our reply parses");
                assert_eq!(m.message_type(), MessageType::Response);
            }
            Reply::Forward => assert!(opts.forward),
            Reply::Drop => {}
        }
        cache_agrees(data, &opts);
    }
});
