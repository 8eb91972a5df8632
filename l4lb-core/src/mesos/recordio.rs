//! RecordIO, the framing of the Mesos operator API's streamed responses:
//! `<decimal length>\n<length bytes>`, repeated. The decoder is incremental
//! (bytes arrive in whatever chunks the body gives) and bounded: it holds at
//! most one partial record, a length line of more than [`MAX_LENGTH_DIGITS`]
//! bytes or with anything but digits is an error, and so is a record longer
//! than the cap it was built with. After an error it stays failed: the
//! stream is out of step and must be dropped.

/// Digits a length line may have (dcos-net refuses a line over 12 bytes).
pub const MAX_LENGTH_DIGITS: usize = 12;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordIoError {
    #[error("RecordIO length line is not a decimal number ({0:?})")]
    BadLength(String),
    #[error("RecordIO length line longer than {MAX_LENGTH_DIGITS} digits")]
    LengthTooLong,
    #[error("RecordIO record of {len} bytes is over the {max}-byte cap")]
    TooLarge { len: u64, max: usize },
    #[error("RecordIO stream ended inside a record ({0} bytes pending)")]
    Truncated(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the length line; `buf` holds the digits so far.
    Length,
    /// Reading a record body of this many bytes; `buf` holds what came.
    Body(usize),
}

/// The incremental decoder. Feed it chunks; it returns whole records.
#[derive(Clone, Debug)]
pub struct RecordIoDecoder {
    max_record: usize,
    phase: Phase,
    buf: Vec<u8>,
    failed: Option<RecordIoError>,
}

impl RecordIoDecoder {
    /// A decoder refusing records over `max_record` bytes.
    pub fn new(max_record: usize) -> Self {
        RecordIoDecoder {
            max_record,
            phase: Phase::Length,
            buf: Vec::new(),
            failed: None,
        }
    }

    /// The records `chunk` completes, in order. An error is sticky.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<Vec<Vec<u8>>, RecordIoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        while !chunk.is_empty() || self.phase == Phase::Body(0) {
            let step = match self.phase {
                Phase::Length => self.length_step(chunk),
                Phase::Body(len) => Ok(self.body_step(chunk, len, &mut out)),
            };
            match step {
                Ok(used) => chunk = &chunk[used..],
                Err(e) => {
                    self.failed = Some(e.clone());
                    self.buf = Vec::new();
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// At the end of the stream: an error if it stopped inside a record.
    pub fn finish(&self) -> Result<(), RecordIoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match (&self.phase, self.buf.len()) {
            (Phase::Length, 0) => Ok(()),
            (_, n) => Err(RecordIoError::Truncated(n)),
        }
    }

    /// Consumes length-line bytes; returns how many were used.
    fn length_step(&mut self, chunk: &[u8]) -> Result<usize, RecordIoError> {
        let (line, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        if !line.iter().all(u8::is_ascii_digit) {
            let mut seen = self.buf.clone();
            seen.extend_from_slice(line);
            return Err(RecordIoError::BadLength(lossy_prefix(&seen)));
        }
        if self.buf.len() + line.len() > MAX_LENGTH_DIGITS {
            return Err(RecordIoError::LengthTooLong);
        }
        self.buf.extend_from_slice(line);
        if done {
            let len = self.take_length()?;
            self.phase = Phase::Body(len);
        }
        Ok(used)
    }

    /// The length the buffered digits spell, checked against the cap.
    fn take_length(&mut self) -> Result<usize, RecordIoError> {
        if self.buf.is_empty() {
            return Err(RecordIoError::BadLength(String::new()));
        }
        // At most 12 ASCII digits: fits in u64, cannot fail.
        let len: u64 = std::str::from_utf8(&self.buf)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RecordIoError::BadLength(lossy_prefix(&self.buf)))?;
        self.buf.clear();
        match usize::try_from(len) {
            Ok(n) if n <= self.max_record => Ok(n),
            _ => Err(RecordIoError::TooLarge {
                len,
                max: self.max_record,
            }),
        }
    }

    /// Consumes body bytes; pushes the record once whole.
    fn body_step(&mut self, chunk: &[u8], len: usize, out: &mut Vec<Vec<u8>>) -> usize {
        let want = len - self.buf.len();
        let used = want.min(chunk.len());
        if used < want {
            if self.buf.is_empty() && len <= PRESIZE_MAX {
                // One allocation for the whole record: growing by doubling
                // would hold up to twice a large snapshot while copying.
                self.buf.reserve_exact(len);
            }
            self.buf.extend_from_slice(chunk);
            return used;
        }
        if self.buf.is_empty() {
            // The whole record is in this chunk: no staging copy.
            out.push(chunk[..used].to_vec());
        } else {
            self.buf.extend_from_slice(&chunk[..used]);
            out.push(std::mem::take(&mut self.buf));
        }
        self.phase = Phase::Length;
        used
    }
}

/// Records up to this size get their buffer at once, once their first bytes
/// arrive; a larger announced length grows as bytes come (an announcement
/// alone never holds more than this).
const PRESIZE_MAX: usize = 16 << 20;

/// The first bytes of a bad length line, for the error.
fn lossy_prefix(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(16)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend_from_slice(format!("{}\n", r.len()).as_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    fn decode_chunks(chunks: &[&[u8]], max: usize) -> Result<Vec<Vec<u8>>, RecordIoError> {
        let mut d = RecordIoDecoder::new(max);
        let mut all = Vec::new();
        for c in chunks {
            all.extend(d.feed(c)?);
        }
        d.finish()?;
        Ok(all)
    }

    const RECORDS: [&[u8]; 4] = [
        br#"{"type":"SUBSCRIBED"}"#,
        b"",
        br#"{"type":"HEARTBEAT"}"#,
        b"0123456789\n\n12\n",
    ];

    #[test]
    fn whole_stream_in_one_chunk() {
        let s = frame(&RECORDS);
        let got = decode_chunks(&[&s], 1024).unwrap();
        assert_eq!(got, RECORDS.map(|r| r.to_vec()));
    }

    /// Every single cut point, and every pair of cut points, gives the same
    /// records as the whole stream.
    #[test]
    fn every_cut_point_gives_the_same_records() {
        let s = frame(&RECORDS);
        let want: Vec<Vec<u8>> = RECORDS.map(|r| r.to_vec()).into();
        for i in 0..=s.len() {
            assert_eq!(decode_chunks(&[&s[..i], &s[i..]], 1024).unwrap(), want);
            for j in i..=s.len() {
                let got = decode_chunks(&[&s[..i], &s[i..j], &s[j..]], 1024).unwrap();
                assert_eq!(got, want, "cuts at {i} and {j}");
            }
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes, 1024).unwrap(), want);
    }

    #[test]
    fn a_record_over_the_cap_is_an_error_before_its_body_arrives() {
        let mut d = RecordIoDecoder::new(10);
        assert_eq!(
            d.feed(b"10\n0123456789").unwrap(),
            vec![b"0123456789".to_vec()]
        );
        assert_eq!(
            d.feed(b"11\n"),
            Err(RecordIoError::TooLarge { len: 11, max: 10 })
        );
        // Sticky: the stream is out of step.
        assert!(d.feed(b"1\nx").is_err());
        assert!(d.finish().is_err());
    }

    #[test]
    fn bad_length_lines_are_errors_not_buffers() {
        for bad in [
            &b"12a\n"[..],
            b"-1\n",
            b" 1\n",
            b"1\r\n",
            b"\n",
            b"{\"type\"",
        ] {
            let mut d = RecordIoDecoder::new(1 << 20);
            assert!(
                matches!(d.feed(bad), Err(RecordIoError::BadLength(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Digits without end: refused after 12, whatever the chunking.
        let mut d = RecordIoDecoder::new(usize::MAX);
        for _ in 0..MAX_LENGTH_DIGITS {
            assert_eq!(d.feed(b"1"), Ok(vec![]));
        }
        assert_eq!(d.feed(b"1"), Err(RecordIoError::LengthTooLong));
        let mut d = RecordIoDecoder::new(usize::MAX);
        assert_eq!(d.feed(&[b'9'; 13]), Err(RecordIoError::LengthTooLong));
    }

    #[test]
    fn a_stream_cut_inside_a_record_is_truncated() {
        let s = frame(&[b"abcdef"]);
        for cut in 1..s.len() {
            let mut d = RecordIoDecoder::new(64);
            d.feed(&s[..cut]).unwrap();
            assert!(
                matches!(d.finish(), Err(RecordIoError::Truncated(_))),
                "{cut}"
            );
        }
    }
}
