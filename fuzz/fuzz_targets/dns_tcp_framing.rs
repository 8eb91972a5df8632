//! Arbitrary bytes as a DNS-over-TCP stream, cut into arbitrary chunks, into
//! `dns::framing::Framer` the way the TCP listener drives it (push one read,
//! answer every complete frame, read again), each frame through
//! `dns::answer::respond` over TCP. The first two bytes seed the chunking.
//! Checks, beyond "no panic":
//! - the frames are exactly those of the whole stream read in one go (each
//!   length prefix followed by that many bytes), in order, whatever the cuts;
//! - a trailing message cut short is never a frame (so never answered) and
//!   is what is left, reported as partial;
//! - every read of up to `READ_CHUNK` is taken whole, the buffer never holds
//!   more than `MAX_BUFFERED`, and after answering, less than one frame;
//! - at most one answer per frame, echoing the frame's id.
#![no_main]

use l4lb_fuzz::dns::{
    answer::{Reply, ReplyOpts, respond},
    framing::{Framer, MAX_BUFFERED, MAX_FRAME, READ_CHUNK},
    records::Zones,
};
use libfuzzer_sys::fuzz_target;

/// The stream read in one go: its frames and the bytes after the last one.
fn reference(mut s: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut frames = Vec::new();
    while s.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([s[0], s[1]]));
        let Some(msg) = s.get(2..2 + len) else { break };
        frames.push(msg);
        s = &s[2 + len..];
    }
    (frames, s)
}

/// Chunk sizes from a tiny xorshift: mostly small cuts, sometimes whole reads.
fn chunk_sizes(seed: u16) -> impl FnMut() -> usize {
    let mut x = u32::from(seed) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if x.is_multiple_of(4) {
            READ_CHUNK
        } else {
            1 + (x as usize >> 3) % 64
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let (want, rest) = reference(stream);
    let zones = Zones::default();
    let opts = ReplyOpts {
        tcp: true,
        ..ReplyOpts::default()
    };
    let mut next_size = chunk_sizes(u16::from_be_bytes(*seed));
    let mut framer = Framer::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut input = stream;
    while !input.is_empty() {
        let n = next_size().min(input.len());
        assert_eq!(framer.push(&input[..n]), n, "a read was cut");
        assert!(framer.buffered() <= MAX_BUFFERED);
        input = &input[n..];
        while let Some(msg) = framer.frame() {
            if let Reply::Send { bytes, .. } = respond(&zones, msg, &opts) {
                assert_eq!(bytes[..2], msg[..2], "answer's id");
            }
            got.push(msg.to_vec());
            framer.consume();
        }
        assert!(framer.buffered() < MAX_FRAME);
    }
    assert_eq!(got, want);
    assert_eq!(framer.buffered(), rest.len());
    assert_eq!(framer.is_partial(), !rest.is_empty());
    assert!(framer.frame().is_none());
});
