//! Arbitrary bytes as Marathon's `/v2/events` body into
//! `marathon::events::from_bytes`, the function the Marathon client feeds
//! the response body to. The first input byte picks how the body is cut into
//! chunks: alternately 1..=16 and 16..=256 bytes, so frames, CRLFs and UTF-8
//! sequences straddle chunk borders (only tiny chunks would make the SSE
//! parser, which rescans a partial line on every chunk, quadratic and the
//! fuzzing slow). Checks, beyond "no panic / no hang":
//! - the chunking changes nothing: the body in one chunk and cut up give the
//!   same frames and the same errors;
//! - at most one fatal error, and it is the last item;
//! - on a connection that stays open after the body (no more bytes), the
//!   stream gives what the closed one gave, then `Idle`: except that bytes
//!   that are not UTF-8 must be reported as `Protocol` while the connection
//!   is still open, not only when it closes (an incomplete sequence at the
//!   very end is not an error yet).
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use l4lb_fuzz::alternating_chunks;
use l4lb_fuzz::marathon::events::{EventError, MarathonEvent, from_bytes, triggers_reread};
use libfuzzer_sys::fuzz_target;

const IDLE: Duration = Duration::from_secs(60);

/// What is compared: the frame, or the kind of error (messages carry byte
/// offsets that depend on the chunking).
#[derive(Debug, PartialEq)]
enum Item {
    Event(String, serde_json::Value),
    Malformed(String),
    Idle,
    Transport,
    Protocol,
    /// Over the default caps (megabytes): unreachable with small inputs.
    TooLarge,
}

fn item(r: Result<MarathonEvent, EventError>) -> Item {
    match r {
        Ok(ev) => {
            assert!(!ev.event_type.is_empty());
            let _ = triggers_reread(&ev.event_type);
            Item::Event(ev.event_type, ev.data)
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                EventError::Malformed { event_type, .. } => Item::Malformed(event_type),
                EventError::Idle(d) => {
                    assert_eq!(d, IDLE);
                    Item::Idle
                }
                EventError::Transport(_) => Item::Transport,
                EventError::Protocol(_) => Item::Protocol,
                EventError::TooLarge(_) => Item::TooLarge,
            }
        }
    }
}

fn run<S>(body: S) -> Vec<Item>
where
    S: Stream<Item = Result<Bytes, String>> + Send + 'static,
{
    let items: Vec<Item> =
        l4lb_fuzz::paused_runtime().block_on(from_bytes(body, IDLE).map(item).collect());
    let fatal = items
        .iter()
        .position(|i| !matches!(i, Item::Event(..) | Item::Malformed(_)));
    if let Some(at) = fatal {
        assert_eq!(at, items.len() - 1, "items after a fatal error: {items:?}");
    }
    items
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let sizes = [
        usize::from(seed & 0x0f) + 1,
        (usize::from(seed >> 4) + 1) * 16,
    ];

    let whole = run(stream::iter(vec![Ok(Bytes::copy_from_slice(body))]));
    let cut = run(stream::iter(alternating_chunks(body, sizes)));
    assert_eq!(cut, whole, "chunking {sizes:?} changed the result");

    let open = run(stream::iter(alternating_chunks(body, sizes)).chain(stream::pending()));
    let mut want = whole;
    match want.last() {
        Some(Item::Protocol)
            if std::str::from_utf8(body).is_err_and(|e| e.error_len().is_none()) =>
        {
            // Cut in the middle of a character: more bytes may complete it.
            *want.last_mut().unwrap() = Item::Idle;
        }
        Some(Item::Protocol) => {}
        _ => want.push(Item::Idle),
    }
    assert_eq!(open, want, "open connection");
});
