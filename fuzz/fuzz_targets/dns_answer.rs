//! Arbitrary bytes as a DNS query, through the exact function the UDP and TCP
//! listeners call. Checks, beyond "no panic": a reply parses, is a response,
//! carries the query's id, and fits the size it was allowed.
#![no_main]

use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use l4lb_fuzz::dns::{
    answer::{Reply, ReplyOpts, respond},
    records::{ZoneOptions, Zones, build_zones},
};
use libfuzzer_sys::fuzz_target;

fn zones() -> &'static Zones {
    static Z: OnceLock<Zones> = OnceLock::new();
    Z.get_or_init(|| {
        let (catalog, published) = l4lb_fuzz::sample_catalog(60);
        build_zones(&catalog, &published, &ZoneOptions::default())
    })
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
    }
});
