//! Response bodies read with a byte cap, over any chunk stream (reqwest's in
//! the client, arbitrary ones in the fuzzer). Nothing a Marathon, or whatever
//! answers in its place, sends can make the agent hold more than the cap.
use std::fmt;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// At most this much of an error body is read, then the response (and its
/// connection) is dropped: an endless 500 body must cost nothing.
pub const ERROR_BODY_MAX: usize = 64 << 10;
/// What of an error body is quoted in messages.
pub const ERROR_SNIPPET: usize = 256;

/// Why a body was not read whole.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BodyError<E: fmt::Display> {
    #[error("response body over the {0}-byte limit")]
    TooLarge(usize),
    /// The transport failed (reset, timeout, broken chunking).
    #[error("{0}")]
    Transport(E),
    #[error("{got} of {announced} announced bytes")]
    Short { got: usize, announced: u64 },
}

/// The whole body, refusing more than `limit` bytes (announced or sent) and
/// fewer than announced.
pub async fn read_capped<S, E>(
    body: S,
    announced: Option<u64>,
    limit: usize,
) -> Result<Bytes, BodyError<E>>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = std::pin::pin!(body);
    // Never trust the announced length for an allocation beyond the cap.
    let mut buf = BytesMut::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(BodyError::Transport)?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    // Belt and braces: hyper already fails a short Content-Length body.
    match announced {
        Some(n) if n != buf.len() as u64 => Err(BodyError::Short {
            got: buf.len(),
            announced: n,
        }),
        _ => Ok(buf.freeze()),
    }
}

/// The start of an error body on one line, for messages: reads at most
/// [`ERROR_BODY_MAX`] bytes (fewer if the body breaks off), quotes the first
/// [`ERROR_SNIPPET`].
pub async fn error_snippet<S, E>(body: S) -> String
where
    S: Stream<Item = Result<Bytes, E>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_MAX {
        match body.next().await {
            Some(Ok(chunk)) => {
                let room = ERROR_BODY_MAX - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf[..buf.len().min(ERROR_SNIPPET)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn the_cap_holds_whatever_is_announced() {
        let ok = read_capped(chunks(&[b"ab", b"cd"]), Some(4), 4).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"abcd"));
        assert_eq!(
            read_capped(chunks(&[b"ab", b"cde"]), None, 4).await,
            Err(BodyError::TooLarge(4))
        );
        assert_eq!(
            read_capped(chunks(&[]), Some(5), 4).await,
            Err(BodyError::TooLarge(4))
        );
        assert_eq!(
            read_capped(chunks(&[b"ab"]), Some(3), 4).await,
            Err(BodyError::Short {
                got: 2,
                announced: 3
            })
        );
        let broken = stream::iter(vec![Ok(Bytes::from_static(b"a")), Err("reset".to_owned())]);
        assert_eq!(
            read_capped(broken, None, 4).await,
            Err(BodyError::Transport("reset".into()))
        );
    }

    /// Regression: an endless error body was read whole (2 GB in 5 s).
    #[tokio::test]
    async fn an_endless_error_body_is_read_only_so_far() {
        let pulled = std::sync::atomic::AtomicUsize::new(0);
        let endless = stream::repeat_with(|| {
            pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, String>(Bytes::from_static(&[b'x'; 4096]))
        });
        let s = error_snippet(endless).await;
        assert_eq!(s.len(), ERROR_SNIPPET);
        let n = pulled.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(n, ERROR_BODY_MAX / 4096, "chunks read");
        let msg = error_snippet(chunks(&[b"{\"message\":\n\"boom\"}"])).await;
        assert_eq!(msg, "{\"message\": \"boom\"}");
    }
}
