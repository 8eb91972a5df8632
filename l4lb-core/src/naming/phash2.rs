//! Erlang's `erlang:phash2/2` for binaries: dcos-net hashes a named VIP's
//! `<label>.<framework>` binary with it to pick the VIP's IPv4 address, so an
//! l4lb node must compute the very same value to give a name the address a
//! dcos-net node gives it.
//!
//! Hand-written because no maintained crate implements it. The definition is
//! OTP's `make_hash2` for a binary (erts/emulator/beam/utils.c): Bob Jenkins'
//! 1996 lookup2 block hash over the bytes, seeded with 13 × the golden-ratio
//! constant, read little-endian in 12-byte blocks; `phash2(Term, Range)` is
//! that hash `rem Range`. OTP documents the value as stable across releases
//! and machines, which is what makes it usable as an address rule.

/// The golden ratio constant lookup2 starts from.
const GOLDEN: u32 = 0x9e37_79b9;
/// make_hash2's seed for a binary: its 13th multiple of `GOLDEN`.
const BINARY_SEED: u32 = GOLDEN.wrapping_mul(13);

/// lookup2's mix of three 32-bit words.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    for (sa, sb, sc) in [(13, 8, 13), (12, 16, 5), (3, 10, 15)] {
        *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> sa);
        *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << sb);
        *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> sc);
    }
}

/// Up to 4 bytes as a little-endian word, shifted left by `shift` bits
/// (lookup2 keeps c's low byte for the length).
fn word(bytes: &[u8], shift: u32) -> u32 {
    bytes.iter().enumerate().fold(0, |w, (i, &b)| {
        w.wrapping_add(u32::from(b) << (8 * i as u32 + shift))
    })
}

/// `make_hash2` of a binary holding `bytes` (whole bytes, no bit tail).
pub fn make_hash2_binary(bytes: &[u8]) -> u32 {
    if bytes.is_empty() {
        return BINARY_SEED;
    }
    let (mut a, mut b, mut c) = (GOLDEN, GOLDEN, BINARY_SEED);
    let mut blocks = bytes.chunks_exact(12);
    for k in &mut blocks {
        a = a.wrapping_add(word(&k[0..4], 0));
        b = b.wrapping_add(word(&k[4..8], 0));
        c = c.wrapping_add(word(&k[8..12], 0));
        mix(&mut a, &mut b, &mut c);
    }
    let tail = blocks.remainder();
    // The full length goes into c; `as u32` wraps like OTP's 32-bit add.
    c = c.wrapping_add(bytes.len() as u32);
    a = a.wrapping_add(word(&tail[..tail.len().min(4)], 0));
    if tail.len() > 4 {
        b = b.wrapping_add(word(&tail[4..tail.len().min(8)], 0));
    }
    if tail.len() > 8 {
        c = c.wrapping_add(word(&tail[8..], 8));
    }
    mix(&mut a, &mut b, &mut c);
    c
}

/// `erlang:phash2(Binary, Range)`: 0..range. `range` must not be 0.
pub fn phash2(bytes: &[u8], range: u32) -> u32 {
    debug_assert!(range > 0, "phash2 range must be 1..=2^32-1 here");
    make_hash2_binary(bytes) % range.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dcos-net's dcos_l4lb_lashup_vip_listener_SUITE `lookup_vips` runs the
    /// TEST range 11.0.0.0–11.0.0.254 (modulus 254): `foo.bar` → 11.0.0.37,
    /// `baz.qux` → 11.0.0.39.
    #[test]
    fn dcos_net_suite_vectors() {
        assert_eq!(phash2(b"foo.bar", 254), 37);
        assert_eq!(phash2(b"baz.qux", 254), 39);
    }

    /// Production range 11.0.0.0–11.255.255.254 (modulus 0xFFFFFE).
    #[test]
    fn production_range_vectors() {
        assert_eq!(phash2(b"redis.marathon", 0xFF_FFFE), 0xCA_42A2); // 11.202.66.162
        assert_eq!(phash2(b"api.hello-world.marathon", 0xFF_FFFE), 0x2E_07F5); // 11.46.7.245
    }

    /// Every tail length (0..=11 bytes after the 12-byte blocks) reaches a
    /// different branch; hashes of prefixes must all differ and be stable.
    #[test]
    fn every_tail_length_is_distinct() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let hashes: std::collections::BTreeSet<u32> = (0..=text.len())
            .map(|n| make_hash2_binary(&text[..n]))
            .collect();
        assert_eq!(hashes.len(), text.len() + 1);
        assert_eq!(make_hash2_binary(b""), BINARY_SEED);
    }
}
