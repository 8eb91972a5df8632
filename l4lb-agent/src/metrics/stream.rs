//! The `/metrics` text sent while it is encoded, a chunk at a time. At
//! 10,000 VIPs x 5 backends the text is tens of MB (one line per VIP and
//! backend pair for several families): built whole in one `String`, its
//! doublings and their copies raised the agent's peak RSS by ~90 MB at each
//! scrape. Here the encoder, on a blocking thread, hands chunks of
//! [`CHUNK`] bytes to the response through a channel of [`IN_FLIGHT`]: a
//! scrape holds a few chunks, and a slow reader holds the encoder back.
use std::fmt;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

/// Bytes per chunk handed to the response.
pub(super) const CHUNK: usize = 64 << 10;
/// Chunks that may wait for the reader.
const IN_FLIGHT: usize = 4;

/// A `fmt::Write` that sends its text in [`CHUNK`]-byte pieces; a write
/// fails once the reader is gone, which ends the encoding.
pub(super) struct ChunkWriter {
    buf: String,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChunkWriter {
    /// The writer (use it on a blocking thread) and the response's stream.
    pub(super) fn new() -> (ChunkWriter, impl Stream<Item = std::io::Result<Bytes>>) {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let writer = ChunkWriter {
            buf: String::with_capacity(CHUNK),
            tx,
        };
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (writer, stream)
    }

    fn send(&mut self) -> fmt::Result {
        let full = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(full)))
            .map_err(|_| fmt::Error)
    }

    /// Sends what is left: the text is complete.
    pub(super) fn finish(mut self) {
        if !self.buf.is_empty() {
            let _ = self.send();
        }
    }

    /// The encoding failed: the response breaks off with an error, so a
    /// scraper sees a failed scrape, not a text that merely ends early.
    pub(super) fn fail(self, why: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(why)));
    }
}

impl fmt::Write for ChunkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn the_text_arrives_whole_in_bounded_chunks() {
        let (mut w, stream) = ChunkWriter::new();
        let writer = tokio::task::spawn_blocking(move || {
            for i in 0..20_000 {
                writeln!(w, "l4lb_line{{n=\"{i}\"}} {i}").unwrap();
            }
            w.finish();
        });
        let chunks: Vec<Bytes> = stream.map(|c| c.unwrap()).collect().await;
        writer.await.unwrap();
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() < CHUNK + 64));
        let text: Vec<u8> = chunks.concat();
        let expected: String = (0..20_000)
            .map(|i| format!("l4lb_line{{n=\"{i}\"}} {i}\n"))
            .collect();
        assert_eq!(String::from_utf8(text).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_gone_reader_stops_the_encoder_and_a_failure_is_an_error() {
        let (mut w, stream) = ChunkWriter::new();
        drop(stream);
        let big = "x".repeat(CHUNK);
        let wrote = tokio::task::spawn_blocking(move || w.write_str(&big))
            .await
            .unwrap();
        assert_eq!(wrote, Err(fmt::Error));

        let (mut w, stream) = ChunkWriter::new();
        let writer = tokio::task::spawn_blocking(move || {
            w.write_str("partial").unwrap();
            w.fail("boom".into());
        });
        let items: Vec<_> = stream.collect().await;
        writer.await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].as_ref().unwrap_err().to_string(), "boom");
    }
}
