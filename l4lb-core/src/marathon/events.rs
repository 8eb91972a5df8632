//! Marathon's `/v2/events` server-sent events, as a stream of typed frames.
//!
//! Events are only a signal to re-read `/v2/apps` (Marathon does not guarantee
//! their order), so a frame whose `data` is not JSON is reported and skipped,
//! never fatal. Liveness is judged on bytes, not frames: Marathon's heartbeats
//! are blank lines the SSE parser swallows.
use std::{fmt, pin::Pin, time::Duration, time::Instant};

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt, stream};

use super::sse_limit::{Framer, Limits};

/// Default cap on one line and on one event of the stream
/// (`--marathon-max-event-bytes`). Marathon's largest events carry app
/// definitions (`api_post_event`, a deployment's plan): kilobytes to a few
/// MB for a large group.
pub const DEFAULT_MAX_EVENT: usize = 8 << 20;

/// Event types we subscribe to (the `event_type=` filters of `/v2/events`).
pub const SUBSCRIBED: &[&str] = &[
    "status_update_event",
    "health_status_changed_event",
    "api_post_event",
    "instance_changed_event",
    "instance_health_changed_event",
    "app_terminated_event",
    "deployment_success",
    "pod_created_event",
    "pod_updated_event",
    "pod_deleted_event",
    "event_stream_attached",
];

/// True if an event of this type may change the catalog, so it should cause a
/// re-read. `event_stream_attached` does not: Marathon sends it to every
/// subscriber whenever any client attaches, so with one agent per node a
/// restart wave would turn into N² re-reads. The source re-reads after its own
/// (re)connect instead.
pub fn triggers_reread(event_type: &str) -> bool {
    event_type != "event_stream_attached" && SUBSCRIBED.contains(&event_type)
}

/// One SSE frame from Marathon.
#[derive(Clone, Debug, PartialEq)]
pub struct MarathonEvent {
    /// The SSE `event:` field (`status_update_event`, …).
    pub event_type: String,
    /// The frame's `data:` JSON.
    pub data: serde_json::Value,
    /// When the frame was parsed off the wire: the start of the event → table latency.
    pub received_at: Instant,
}

/// What can go wrong on the event stream. Only [`EventError::Malformed`] lets
/// the stream go on; after any other error the stream ends.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event {event_type:?}: data is not JSON ({reason}); skipped")]
    Malformed {
        event_type: String,
        received_at: Instant,
        reason: String,
    },
    #[error("event stream silent for {0:?} (heartbeats included): assuming it is dead")]
    Idle(Duration),
    #[error("event stream broken: {0}")]
    Transport(String),
    #[error("event stream is not valid SSE: {0}")]
    Protocol(String),
    /// A line or an event over the cap (see [`super::sse_limit`]).
    #[error("event stream sent {0}: dropped")]
    TooLarge(String),
}

impl EventError {
    /// False only for a malformed frame: the connection itself is fine.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, EventError::Malformed { .. })
    }
}

/// The stream [`crate::marathon::client::MarathonClient::events`] returns.
pub type MarathonEvents = Pin<Box<dyn Stream<Item = Result<MarathonEvent, EventError>> + Send>>;

/// [`from_bytes_capped`] with the default caps.
pub fn from_bytes<S, E>(body: S, idle: Duration) -> MarathonEvents
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    from_bytes_capped(body, idle, DEFAULT_MAX_EVENT)
}

/// Turns a response body into Marathon events. Yields `Err(Idle)` and ends if
/// no byte arrives for `idle`; ends after the first fatal error (bytes that
/// are not UTF-8 are one, reported when they arrive: see [`Utf8Check`]; a
/// line or an event over `max` bytes is another).
pub fn from_bytes_capped<S, E>(body: S, idle: Duration, max: usize) -> MarathonEvents
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let limits = Limits {
        max_line: max.max(1),
        max_event: max.max(1),
    };
    let text = framed(utf8_checked(with_idle_timeout(body, idle)), limits);
    let frames = Box::pin(text.eventsource());
    Box::pin(stream::unfold(Some(frames), |state| async move {
        let mut frames = state?;
        let item = match frames.next().await? {
            Ok(ev) => to_event(ev),
            Err(EventStreamError::Transport(e)) => Err(e),
            Err(EventStreamError::Utf8(e)) => Err(EventError::Protocol(e.to_string())),
            Err(EventStreamError::Parser(e)) => Err(EventError::Protocol(e.to_string())),
        };
        let next = match &item {
            Err(e) if e.is_fatal() => None,
            _ => Some(frames),
        };
        Some((item, next))
    }))
}

fn to_event(ev: eventsource_stream::Event) -> Result<MarathonEvent, EventError> {
    let received_at = Instant::now();
    match serde_json::from_str::<serde_json::Value>(&ev.data) {
        Ok(data) => {
            // Frames without an `event:` line get the SSE default "message";
            // Marathon's payload names its type too (an empty name is none).
            let event_type = if ev.event == "message" {
                data.get("eventType")
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .map_or(ev.event, str::to_owned)
            } else {
                ev.event
            };
            Ok(MarathonEvent {
                event_type,
                data,
                received_at,
            })
        }
        Err(e) => Err(EventError::Malformed {
            event_type: ev.event,
            received_at,
            reason: e.to_string(),
        }),
    }
}

/// Passes the chunks through; an `idle` gap between two chunks becomes an
/// `Idle` error that ends the stream. The clock only runs while the stream is
/// polled, so a consumer busy elsewhere never sees a false timeout.
fn with_idle_timeout<S, E>(
    body: S,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, EventError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    stream::unfold(Some(Box::pin(body)), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(EventError::Transport(e.to_string())), None)),
            Ok(None) => None,
            Err(_) => Some((Err(EventError::Idle(idle)), None)),
        }
    })
}

/// The body on its way to the SSE parser (eventsource-stream 0.2.3), which
/// has two flaws this works around:
/// - it cuts a leading byte-order mark off as if it were one byte long and
///   panics (the mark is three bytes in UTF-8). The mark is dropped here, and
///   the parser is handed a blank line first (a blank line with no fields
///   dispatches nothing), so it never looks for one;
/// - it keeps bytes that are not UTF-8, and every byte after them, until the
///   connection closes: on a live connection events would stop silently and
///   the buffer grow without bound. Here the text before them is passed on,
///   then a `Protocol` error.
///
/// Only whole characters are passed on: a sequence cut by a chunk border
/// waits (at most 3 bytes) for the rest.
#[derive(Debug, Default)]
struct Utf8Check {
    /// The start of a character the last chunk ended in.
    held: Vec<u8>,
    /// Some text has been passed on (the byte-order mark is behind us).
    started: bool,
}

impl Utf8Check {
    /// The chunk's whole characters (maybe none yet); on bytes that are not
    /// UTF-8, the text before them and the error.
    fn push(&mut self, chunk: Bytes) -> Result<Bytes, (Bytes, String)> {
        let buf = if self.held.is_empty() {
            chunk
        } else {
            let mut b = std::mem::take(&mut self.held);
            b.extend_from_slice(&chunk);
            Bytes::from(b)
        };
        let (text, bad) = match std::str::from_utf8(&buf) {
            Ok(_) => (buf, None),
            Err(e) => {
                let valid = e.valid_up_to();
                match e.error_len() {
                    None => {
                        self.held = buf[valid..].to_vec();
                        (buf.slice(..valid), None)
                    }
                    Some(len) => (
                        buf.slice(..valid),
                        Some(format!(
                            "not UTF-8: bytes {:02x?}",
                            &buf[valid..valid + len]
                        )),
                    ),
                }
            }
        };
        let text = self.strip_bom(text);
        match bad {
            None => Ok(text),
            Some(msg) => Err((text, msg)),
        }
    }

    /// Drops the byte-order mark the body may start with (one, as in the SSE spec).
    fn strip_bom(&mut self, text: Bytes) -> Bytes {
        if self.started || text.is_empty() {
            return text;
        }
        self.started = true;
        const BOM: &[u8] = "\u{feff}".as_bytes();
        if text.starts_with(BOM) {
            text.slice(BOM.len()..)
        } else {
            text
        }
    }

    /// The body ended: an error if it ended inside a character.
    fn finish(&self) -> Result<(), String> {
        if self.held.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "not UTF-8: the body ends inside a character ({:02x?})",
                self.held
            ))
        }
    }
}

/// Passes the body through [`Utf8Check`]; ends after the first error.
fn utf8_checked<S>(body: S) -> impl Stream<Item = Result<Bytes, EventError>> + Send
where
    S: Stream<Item = Result<Bytes, EventError>> + Send + 'static,
{
    let blank = stream::iter([Ok(Bytes::from_static(b"\n"))]);
    let checked = stream::unfold(
        Some((Box::pin(body), Utf8Check::default())),
        |state| async move {
            let (mut body, mut check) = state?;
            loop {
                let out = match body.next().await {
                    Some(Ok(chunk)) => match check.push(chunk) {
                        Ok(text) if text.is_empty() => continue,
                        Ok(text) => vec![Ok(text)],
                        Err((text, msg)) => {
                            let err = Err(EventError::Protocol(msg));
                            let out = if text.is_empty() {
                                vec![err]
                            } else {
                                vec![Ok(text), err]
                            };
                            return Some((out, None));
                        }
                    },
                    Some(Err(e)) => return Some((vec![Err(e)], None)),
                    None => match check.finish() {
                        Ok(()) => return None,
                        Err(msg) => return Some((vec![Err(EventError::Protocol(msg))], None)),
                    },
                };
                return Some((out, Some((body, check))));
            }
        },
    );
    blank.chain(checked.flat_map(stream::iter))
}

/// Passes only complete lines on, and ends the stream with `TooLarge` once a
/// line or an event passes its cap (after the lines before it).
fn framed<S>(text: S, limits: Limits) -> impl Stream<Item = Result<Bytes, EventError>> + Send
where
    S: Stream<Item = Result<Bytes, EventError>> + Send + 'static,
{
    let framed = stream::unfold(
        Some((Box::pin(text), Framer::new(limits))),
        |state| async move {
            let (mut text, mut framer) = state?;
            loop {
                let chunk = match text.next().await? {
                    Ok(chunk) => chunk,
                    Err(e) => return Some((vec![Err(e)], None)),
                };
                match framer.push(&chunk) {
                    Ok(lines) if lines.is_empty() => continue,
                    Ok(lines) => return Some((vec![Ok(lines)], Some((text, framer)))),
                    Err((lines, why)) => {
                        let err = Err(EventError::TooLarge(why));
                        let out = if lines.is_empty() {
                            vec![err]
                        } else {
                            vec![Ok(lines), err]
                        };
                        return Some((out, None));
                    }
                }
            }
        },
    );
    framed.flat_map(stream::iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/marathon/events.sse");

    /// The body cut into `size`-byte chunks, so frames straddle chunk borders.
    fn chunked(bytes: &'static [u8], size: usize) -> impl Stream<Item = Result<Bytes, String>> {
        stream::iter(
            bytes
                .chunks(size)
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
    }

    async fn collect(s: MarathonEvents) -> Vec<Result<MarathonEvent, EventError>> {
        s.collect().await
    }

    #[tokio::test]
    async fn fixture_frames_in_any_chunking() {
        let want = [
            "event_stream_attached",
            "status_update_event",
            "instance_changed_event",
            "health_status_changed_event",
            "instance_health_changed_event",
            "health_status_changed_event",
            "status_update_event",
            "status_update_event",
            "unknown_instance_terminated_event",
            "api_post_event",
            "deployment_success",
            "app_terminated_event",
        ];
        for size in [1, 7, 64, FIXTURE.len()] {
            let got = collect(from_bytes(chunked(FIXTURE, size), Duration::from_secs(5))).await;
            let types: Vec<_> = got
                .iter()
                .map(|r| r.as_ref().unwrap().event_type.as_str())
                .collect();
            assert_eq!(types, want, "chunk size {size}");
            let first = got[1].as_ref().unwrap();
            assert_eq!(first.data["taskStatus"], "TASK_RUNNING");
            assert_eq!(first.data["appId"], "/redis");
            // Monotonic arrival stamps.
            assert!(got.windows(2).all(|w| {
                w[0].as_ref().unwrap().received_at <= w[1].as_ref().unwrap().received_at
            }));
        }
    }

    #[test]
    fn reread_triggers() {
        assert!(triggers_reread("status_update_event"));
        assert!(triggers_reread("deployment_success"));
        assert!(!triggers_reread("event_stream_attached"));
        assert!(!triggers_reread("unknown_instance_terminated_event"));
        assert!(!triggers_reread("framework_message_event"));
    }

    #[tokio::test]
    async fn malformed_data_is_reported_and_the_stream_goes_on() {
        let body: &'static [u8] = b": comment\n\r\n\
            event: status_update_event\ndata: {\"appId\": \"/a\",\n\n\
            event: api_post_event\r\ndata: {\"appId\":\"/b\"}\r\n\r\n\
            data: {\"eventType\":\"deployment_success\"}\n\n";
        let got = collect(from_bytes(chunked(body, 5), Duration::from_secs(5))).await;
        assert_eq!(got.len(), 3, "{got:?}");
        match &got[0] {
            Err(e @ EventError::Malformed { event_type, .. }) => {
                assert_eq!(event_type, "status_update_event");
                assert!(!e.is_fatal());
            }
            other => panic!("{other:?}"),
        }
        let b = got[1].as_ref().unwrap();
        assert_eq!(
            (b.event_type.as_str(), &b.data["appId"]),
            ("api_post_event", &"/b".into())
        );
        // No `event:` line: the type comes from the payload.
        assert_eq!(got[2].as_ref().unwrap().event_type, "deployment_success");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_ends_the_stream_with_idle() {
        let idle = Duration::from_secs(60);
        // One frame, then heartbeats (blank lines) every 10 s for a while, then nothing.
        let frame = stream::iter([Ok::<_, String>(Bytes::from_static(
            b"event: deployment_success\ndata: {}\n\n",
        ))]);
        let heartbeats = stream::unfold(0, |n| async move {
            if n == 6 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            Some((Ok(Bytes::from_static(b"\r\n")), n + 1))
        });
        let body = frame.chain(heartbeats).chain(stream::pending());
        let start = tokio::time::Instant::now();
        let got = collect(from_bytes(body, idle)).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().event_type, "deployment_success");
        assert!(matches!(got[1], Err(EventError::Idle(d)) if d == idle));
        // 6 heartbeats kept it alive, then 60 s of silence.
        assert_eq!(start.elapsed(), Duration::from_secs(60 + 60));
    }

    /// Fuzz find (fuzz/regressions/sse_events/bom-panic): eventsource-stream
    /// sliced a leading byte-order mark at byte 1 and panicked.
    #[tokio::test]
    async fn byte_order_mark_is_dropped_in_any_chunking() {
        let body: &'static [u8] =
            "\u{feff}: hi\r\nevent: deployment_success\r\ndata: {}\r\n\r\n".as_bytes();
        for size in [1, 2, 3, 4, body.len()] {
            let got = collect(from_bytes(chunked(body, size), Duration::from_secs(5))).await;
            assert_eq!(got.len(), 1, "chunk size {size}: {got:?}");
            assert_eq!(got[0].as_ref().unwrap().event_type, "deployment_success");
        }
        // Only one is dropped: a second one is part of the field name
        // ("\u{feff}data", ignored), as the SSE spec reads it.
        let body: &'static [u8] = "\u{feff}\u{feff}data: {}\n\ndata: {}\n\n".as_bytes();
        for size in [1, 3, body.len()] {
            let got = collect(from_bytes(chunked(body, size), Duration::from_secs(5))).await;
            assert_eq!(got.len(), 1, "chunk size {size}: {got:?}");
            assert_eq!(got[0].as_ref().unwrap().event_type, "message");
        }
    }

    /// Fuzz find (fuzz/regressions/sse_events/empty-event-type): a frame
    /// without an `event:` line whose payload's `eventType` is "" came out
    /// with an empty type; it keeps the SSE default.
    #[tokio::test]
    async fn an_empty_event_type_in_the_payload_keeps_the_default() {
        let body: &'static [u8] = b"data: {\"eventType\":\"\"}\n\n";
        let got = collect(from_bytes(
            chunked(body, body.len()),
            Duration::from_secs(5),
        ))
        .await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().event_type, "message");
    }

    /// Fuzz find (fuzz/regressions/sse_events/bad-utf8-open): bytes that are
    /// not UTF-8 on a connection that stays open were never reported; the
    /// parser held them and every later byte, so events stopped silently.
    #[tokio::test(start_paused = true)]
    async fn bad_utf8_is_reported_while_the_connection_is_open() {
        let body = stream::iter([
            Ok::<_, String>(Bytes::from_static(
                b"event: deployment_success\ndata: {}\n\ndata: \xff\n\n",
            )),
            Ok(Bytes::from_static(
                b"event: deployment_success\ndata: {}\n\n",
            )),
        ])
        .chain(stream::pending());
        let start = tokio::time::Instant::now();
        let got = collect(from_bytes(body, Duration::from_secs(60))).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().event_type, "deployment_success");
        assert!(
            matches!(&got[1], Err(EventError::Protocol(m)) if m.contains("ff")),
            "{got:?}"
        );
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "reported at once, not on idle"
        );
    }

    #[tokio::test]
    async fn characters_cut_by_chunk_borders() {
        let body: &'static [u8] =
            "data: {\"app\":\"/caf\u{e9}-\u{20ac}-\u{1f600}\"}\n\n".as_bytes();
        for size in [1, 2, 3, body.len()] {
            let got = collect(from_bytes(chunked(body, size), Duration::from_secs(5))).await;
            assert_eq!(got.len(), 1, "chunk size {size}: {got:?}");
            assert_eq!(
                got[0].as_ref().unwrap().data["app"],
                "/caf\u{e9}-\u{20ac}-\u{1f600}"
            );
        }
        // A body that ends inside a character is not UTF-8.
        let got = collect(from_bytes(
            chunked(b"data: {}\n\ndata: \xe2\x82", 1),
            Duration::from_secs(5),
        ))
        .await;
        assert!(
            matches!(got.as_slice(), [Ok(_), Err(EventError::Protocol(_))]),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn transport_error_and_bad_utf8_end_the_stream() {
        let body = stream::iter([
            Ok(Bytes::from_static(
                b"event: deployment_success\ndata: {}\n\n",
            )),
            Err("connection reset".to_string()),
            Ok(Bytes::from_static(
                b"event: deployment_success\ndata: {}\n\n",
            )),
        ]);
        let got = collect(from_bytes(body, Duration::from_secs(5))).await;
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[1], Err(EventError::Transport(m)) if m.contains("reset")));

        let body = stream::iter([Ok::<_, String>(Bytes::from_static(b"data: \xff\xfe\n\n"))]);
        let got = collect(from_bytes(body, Duration::from_secs(5))).await;
        assert!(
            matches!(got.as_slice(), [Err(EventError::Protocol(_))]),
            "{got:?}"
        );
    }

    /// Regression: `data:` lines never closed by a blank line grew without
    /// bound (2.2 GB); now the event cap ends the stream, after the events
    /// before it.
    #[tokio::test(start_paused = true)]
    async fn endless_data_lines_end_the_stream_at_the_cap() {
        let first = stream::iter([Ok::<_, String>(Bytes::from_static(
            b"event: deployment_success\ndata: {}\n\n",
        ))]);
        let endless = stream::repeat_with(|| Ok(Bytes::from_static(b"data: 0123456789\n")));
        let got = collect(from_bytes_capped(
            first.chain(endless),
            Duration::from_secs(60),
            1000,
        ))
        .await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().event_type, "deployment_success");
        assert!(
            matches!(&got[1], Err(e @ EventError::TooLarge(m)) if m.contains("event longer than 1000") && e.is_fatal()),
            "{got:?}"
        );
    }

    /// Regression: one endless line (no newline ever) held a core while
    /// events stopped; now the line cap ends the stream.
    #[tokio::test(start_paused = true)]
    async fn one_endless_line_ends_the_stream_at_the_cap() {
        let endless = stream::iter([Ok::<_, String>(Bytes::from_static(b"data: {\"x\":\""))])
            .chain(stream::repeat_with(|| Ok(Bytes::from_static(&[b'x'; 512]))));
        let start = tokio::time::Instant::now();
        let got = collect(from_bytes_capped(
            endless,
            Duration::from_secs(60),
            64 << 10,
        ))
        .await;
        assert!(
            matches!(got.as_slice(), [Err(EventError::TooLarge(m))] if m.contains("line longer than 65536")),
            "{got:?}"
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "not an idle timeout");
    }

    #[tokio::test]
    async fn events_up_to_the_cap_pass_in_any_chunking() {
        let body: &'static [u8] = b"event: deployment_success\r\ndata: {\"a\":1}\r\n\r\n";
        for size in [1, 2, 7, body.len()] {
            let got = collect(from_bytes_capped(
                chunked(body, size),
                Duration::from_secs(5),
                38,
            ))
            .await;
            assert_eq!(got.len(), 1, "chunk size {size}: {got:?}");
            assert_eq!(got[0].as_ref().unwrap().data["a"], 1);
        }
        let got = collect(from_bytes_capped(
            chunked(body, 3),
            Duration::from_secs(5),
            37,
        ))
        .await;
        assert!(
            matches!(got.as_slice(), [Err(EventError::TooLarge(_))]),
            "{got:?}"
        );
    }
}
