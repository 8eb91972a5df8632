//! Bounds on the event stream's framing, applied to the text before the SSE
//! parser (eventsource-stream 0.2.3 has none): a line longer than the cap, or
//! an event (every line since the last blank one) longer than the cap, ends
//! the stream with an error, and the client reconnects. Without them `data:`
//! lines never closed by a blank line grew to 2.2 GB, and one endless line
//! held a core: the parser rescans a partial line on every chunk.
//!
//! Only complete lines are passed on: a partial line waits here (at most the
//! cap), so the parser never rescans one (its cost stays linear).
use bytes::{Bytes, BytesMut};

/// Caps in bytes; each at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_line: usize,
    pub max_event: usize,
}

/// The framing state between chunks.
#[derive(Debug)]
pub struct Framer {
    limits: Limits,
    /// The current partial line (no terminator yet).
    held: BytesMut,
    /// Bytes of the current line so far (terminator excluded).
    line: usize,
    /// Bytes of the current event's lines so far (terminators excluded).
    event: usize,
    /// The last byte passed on ended a line: a terminator now ends a blank one.
    at_line_start: bool,
    /// The last byte passed on was a CR: an LF now completes its CRLF.
    after_cr: bool,
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            held: BytesMut::new(),
            line: 0,
            event: 0,
            at_line_start: true,
            after_cr: false,
        }
    }

    /// The complete lines `chunk` finishes (maybe none), or, once a cap is
    /// passed, the lines before it and why.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, (Bytes, String)> {
        let mut complete = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if let Err(why) = self.step(b) {
                return Err((self.take(chunk, complete), why));
            }
            if !self.at_line_start {
                continue;
            }
            complete = i + 1;
        }
        let out = self.take(chunk, complete);
        self.held.extend_from_slice(&chunk[complete..]);
        Ok(out)
    }

    /// The held partial line plus `chunk[..n]` (which ends a line).
    fn take(&mut self, chunk: &[u8], n: usize) -> Bytes {
        if n == 0 {
            return Bytes::new();
        }
        let mut out = std::mem::take(&mut self.held);
        out.extend_from_slice(&chunk[..n]);
        out.freeze()
    }

    fn step(&mut self, b: u8) -> Result<(), String> {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        match b {
            // The LF of a CRLF: the line ended at the CR.
            b'\n' if after_cr => {}
            b'\r' | b'\n' => {
                if self.at_line_start {
                    self.event = 0;
                }
                self.at_line_start = true;
            }
            _ => {
                if self.at_line_start {
                    self.at_line_start = false;
                    self.line = 0;
                }
                self.line += 1;
                self.event += 1;
                if self.line > self.limits.max_line {
                    return Err(format!("a line longer than {} bytes", self.limits.max_line));
                }
                if self.event > self.limits.max_event {
                    return Err(format!(
                        "an event longer than {} bytes (no blank line ends it)",
                        self.limits.max_event
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer(max_line: usize, max_event: usize) -> Framer {
        Framer::new(Limits {
            max_line,
            max_event,
        })
    }

    #[test]
    fn complete_lines_pass_partial_ones_wait() {
        let mut f = framer(100, 1000);
        assert_eq!(f.push(b"data: a").unwrap(), Bytes::new());
        assert_eq!(
            f.push(b"bc\ndata: x").unwrap(),
            Bytes::from_static(b"data: abc\n")
        );
        assert_eq!(f.push(b"\r").unwrap(), Bytes::from_static(b"data: x\r"));
        assert_eq!(f.push(b"\n\r\n").unwrap(), Bytes::from_static(b"\n\r\n"));
    }

    #[test]
    fn an_endless_line_is_cut_at_the_cap() {
        let mut f = framer(10, 1000);
        assert!(f.push(b"data: 123").is_ok());
        let (before, why) = f.push(b"45\n").unwrap_err();
        assert!(before.is_empty());
        assert!(why.contains("line longer than 10"), "{why}");
        // Lines of exactly the cap are fine, in any chunking.
        let mut f = framer(10, 1000);
        for b in b"0123456789\r\n0123456789\n\n" {
            assert!(f.push(&[*b]).is_ok());
        }
    }

    #[test]
    fn data_lines_without_a_blank_line_are_cut_at_the_event_cap() {
        let mut f = framer(100, 20);
        assert!(f.push(b"event: x\ndata: 1\n\n").is_ok());
        let (before, why) = f.push(b"data: 123\ndata: 456\ndata: 789\n").unwrap_err();
        assert_eq!(before, Bytes::from_static(b"data: 123\ndata: 456\n"));
        assert!(why.contains("event longer than 20"), "{why}");
        // A blank line (CRLF, CR or LF) starts a new event.
        let mut f = framer(100, 20);
        for _ in 0..10 {
            assert!(f.push(b"data: 123456789\r\n\r\n").is_ok());
            assert!(f.push(b"data: 123456789\r\r").is_ok());
        }
    }
}
