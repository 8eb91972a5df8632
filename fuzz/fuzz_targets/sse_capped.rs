//! The event stream with small caps (`marathon::events::from_bytes_capped`,
//! the bounds of `marathon::sse_limit`): arbitrary bytes as the body. Byte 0
//! is the cap (1..=256 bytes for a line and an event), byte 1 the chunking
//! (alternately 1..=16 and 16..=256 bytes). Checks, beyond "no panic / no
//! hang":
//! - the chunking changes nothing;
//! - at most one fatal error, and it is the last item;
//! - for a UTF-8 body, a reference count of line and event lengths (lines
//!   split at CRLF, CR or LF; an event is every line since the last blank
//!   one) says whether the stream must end with `TooLarge`;
//! - before its error, the capped stream gives what the uncapped one gives.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use l4lb_fuzz::alternating_chunks;
use l4lb_fuzz::marathon::events::{EventError, MarathonEvent, from_bytes_capped};
use libfuzzer_sys::fuzz_target;

const IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, PartialEq)]
enum Item {
    Event(String, serde_json::Value),
    Malformed(String),
    Fatal(&'static str),
}

fn item(r: Result<MarathonEvent, EventError>) -> Item {
    match r {
        Ok(ev) => Item::Event(ev.event_type, ev.data),
        Err(EventError::Malformed { event_type, .. }) => Item::Malformed(event_type),
        Err(EventError::TooLarge(m)) => {
            assert!(m.contains("longer than"), "{m}");
            Item::Fatal("too large")
        }
        Err(EventError::Idle(_)) => Item::Fatal("idle"),
        Err(EventError::Transport(_)) => Item::Fatal("transport"),
        Err(EventError::Protocol(_)) => Item::Fatal("protocol"),
    }
}

fn run(chunks: Vec<Result<Bytes, String>>, cap: usize) -> Vec<Item> {
    let items: Vec<Item> = l4lb_fuzz::paused_runtime().block_on(
        from_bytes_capped(stream::iter(chunks), IDLE, cap)
            .map(item)
            .collect(),
    );
    if let Some(at) = items.iter().position(|i| matches!(i, Item::Fatal(_))) {
        assert_eq!(at, items.len() - 1, "items after a fatal error: {items:?}");
    }
    items
}

/// Whether a line or an event of `text` passes `cap` (bytes, terminators
/// excluded), by a plain split: the reference for the streaming count.
fn over_cap(text: &str, cap: usize) -> bool {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event = 0;
    let mut rest = text;
    loop {
        let Some(end) = rest.find(['\r', '\n']) else {
            // The last, unfinished line counts too: the cap is on bytes held.
            return rest.len() > cap || event + rest.len() > cap;
        };
        let line = &rest[..end];
        if line.len() > cap || event + line.len() > cap {
            return true;
        }
        event = if line.is_empty() {
            0
        } else {
            event + line.len()
        };
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[cap, seed], body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let cap = usize::from(cap) + 1;
    let sizes = [
        usize::from(seed & 0x0f) + 1,
        (usize::from(seed >> 4) + 1) * 16,
    ];
    let whole = run(vec![Ok(Bytes::copy_from_slice(body))], cap);
    let cut = run(alternating_chunks(body, sizes), cap);
    assert_eq!(cut, whole, "chunking {sizes:?} changed the result");

    let too_large = whole.last() == Some(&Item::Fatal("too large"));
    if let Ok(text) = std::str::from_utf8(body) {
        assert_eq!(too_large, over_cap(text, cap), "cap {cap}: {whole:?}");
    }
    let uncapped = run(vec![Ok(Bytes::copy_from_slice(body))], usize::MAX);
    if too_large {
        let before = &whole[..whole.len() - 1];
        assert_eq!(
            before,
            &uncapped[..before.len()],
            "the cap changed earlier events"
        );
    } else {
        assert_eq!(whole, uncapped, "a stream within the cap changed");
    }
});
