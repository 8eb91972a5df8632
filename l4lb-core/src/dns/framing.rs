//! DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766 §8): each message is
//! preceded by its length as a big-endian u16. Pure and socket-free so the
//! fuzzer (`dns_tcp_framing`) drives exactly what the listener runs.
//!
//! Hand-written rather than tokio-util's `LengthDelimitedCodec`: the server
//! needs to know whether a message is half-read (its deadline and "cut short"
//! counter depend on it) and a hard bound on what is buffered, and this is
//! a few lines; tokio-util is not otherwise a dependency.

/// Largest read the server hands to [`Framer::push`] at once.
pub const READ_CHUNK: usize = 4096;
/// Longest frame: the prefix and a 65535-byte message.
pub const MAX_FRAME: usize = 2 + u16::MAX as usize;
/// What a [`Framer`] ever holds: less than one frame (the server answers
/// every complete frame before reading again) plus one read.
pub const MAX_BUFFERED: usize = MAX_FRAME + READ_CHUNK;

/// Bytes received on one connection, cut into messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the first unconsumed byte is in `buf`.
    start: usize,
}

impl Framer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends as much of `data` as the bound allows; returns how much.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let n = data.len().min(MAX_BUFFERED - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        n
    }

    /// The first complete message (without its prefix), if there is one.
    pub fn frame(&self) -> Option<&[u8]> {
        let b = &self.buf[self.start..];
        let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        b.get(2..2 + len)
    }

    /// Drops the message [`Self::frame`] returned; no-op without one.
    pub fn consume(&mut self) {
        let Some(len) = self.frame().map(<[u8]>::len) else {
            return;
        };
        self.start += 2 + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            // A large message's buffer is not kept for an idle connection.
            self.buf.shrink_to(READ_CHUNK);
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Part of a message received, the rest still missing.
    pub fn is_partial(&self) -> bool {
        self.buffered() > 0 && self.frame().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    fn drain(f: &mut Framer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = f.frame() {
            out.push(m.to_vec());
            f.consume();
        }
        out
    }

    #[test]
    fn messages_across_any_cut() {
        let msgs: Vec<Vec<u8>> = vec![b"abc".to_vec(), vec![], vec![7; 300], b"z".to_vec()];
        let stream: Vec<u8> = msgs.iter().flat_map(|m| frame(m)).collect();
        for cut in 1..stream.len() {
            let mut f = Framer::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(cut) {
                assert_eq!(f.push(chunk), chunk.len());
                got.extend(drain(&mut f));
            }
            assert_eq!(got, msgs, "chunks of {cut}");
            assert_eq!(f.buffered(), 0);
            assert!(!f.is_partial());
        }
    }

    #[test]
    fn a_message_cut_short_is_never_a_frame() {
        let full = frame(&[1; 40]);
        for end in 0..full.len() {
            let mut f = Framer::new();
            f.push(&full[..end]);
            assert_eq!(f.frame(), None, "{end} of {} bytes", full.len());
            assert_eq!(f.is_partial(), end > 0);
            f.consume();
            assert_eq!(f.buffered(), end, "consume without a frame keeps the bytes");
        }
    }

    #[test]
    fn buffer_is_bounded() {
        let mut f = Framer::new();
        let junk = vec![0xff; READ_CHUNK];
        let mut taken = 0;
        for _ in 0..100 {
            taken += f.push(&junk);
        }
        assert_eq!(taken, MAX_BUFFERED);
        assert_eq!(f.buffered(), MAX_BUFFERED);
        assert_eq!(f.frame().map(<[u8]>::len), Some(0xffff));
        f.consume();
        assert_eq!(f.buffered(), MAX_BUFFERED - MAX_FRAME);
    }
}
