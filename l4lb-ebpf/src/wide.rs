//! Packet bytes read and written as whole words. Header fields have
//! alignment 1, so a plain read of a `[u8; 4]` compiles to four byte loads
//! reassembled with shifts (a write, to four byte stores): the BPF backend
//! may not emit a misaligned access, because stack slots must be aligned.
//! Packet memory need not be on x86-64 (the verifier checks its alignment
//! there only under BPF_F_STRICT_ALIGNMENT, which the agent never sets), so
//! these accesses are written as BPF assembly, which the compiler cannot
//! split. Used by XDP (`xdp.rs`): `Packet::read` and the rewrite.
use core::{arch::asm, mem::size_of};

/// The `T` (alignment 1: bytes and header structs) at `p`, by 4-byte words
/// when its size is a multiple of 4 (up to [`MAX_WORDS`] words), by one
/// 2-byte load when it is 2, else as the compiler reads it.
///
/// # Safety
/// `p` must point into the packet with `size_of::<T>()` bytes bounds-checked.
#[inline(always)]
pub unsafe fn read<T>(p: *const T) -> T {
    let n = size_of::<T>();
    if n == 2 {
        // SAFETY: the caller's.
        let h = unsafe { load16_at::<0>(p.cast()) };
        // SAFETY: T is 2 bytes of plain data.
        return unsafe { core::mem::transmute_copy(&h) };
    }
    if n % 4 != 0 || n == 0 || n / 4 > MAX_WORDS {
        // SAFETY: the caller's.
        return unsafe { core::ptr::read_unaligned(p) };
    }
    let (mut w, p, words) = ([0u32; MAX_WORDS], p.cast::<u8>(), n / 4);
    // SAFETY: the caller's; each word read lies within the T. One load
    // per word, each with its offset in the instruction.
    unsafe {
        w[0] = load32_at::<0>(p);
        if words > 1 {
            w[1] = load32_at::<4>(p);
        }
        if words > 2 {
            w[2] = load32_at::<8>(p);
        }
        if words > 3 {
            w[3] = load32_at::<12>(p);
        }
        if words > 4 {
            w[4] = load32_at::<16>(p);
        }
    }
    // SAFETY: T is plain data no larger than `w`, whose first bytes hold it.
    unsafe { core::mem::transmute_copy(&w) }
}

/// The largest `T` read by words (an IPv4 header is 5).
const MAX_WORDS: usize = 5;
// `read` unrolls exactly this many word loads: a change here needs one there.
const _: () = assert!(MAX_WORDS == 5);

/// The packet load and store of one width: `$load_at::<OFF>(p)` reads the
/// `$t` at `p + OFF`, `$store_at::<OFF>(p, v)` writes `v` there, `v` being
/// network-order bytes read as a native integer; the offset is in the
/// instruction.
///
/// # Safety (of both)
/// `p + OFF` must point into the packet with `size_of::<$t>()` bytes
/// bounds-checked.
macro_rules! width {
    ($t:ty, $bpf:literal, $load_at:ident, $store_at:ident) => {
        #[inline(always)]
        pub unsafe fn $load_at<const OFF: i16>(p: *const u8) -> $t {
            let v: u64;
            // SAFETY: the caller's; a load has no other effect.
            unsafe {
                asm!(concat!("{v} = *(", $bpf, " *)({p} + {off})"), v = out(reg) v, p = in(reg) p,
                     off = const OFF, options(pure, readonly, nostack, preserves_flags));
            }
            v as $t
        }

        #[inline(always)]
        pub unsafe fn $store_at<const OFF: i16>(p: *mut u8, v: $t) {
            // SAFETY: the caller's.
            unsafe {
                asm!(concat!("*(", $bpf, " *)({p} + {off}) = {v}"), p = in(reg) p,
                     v = in(reg) u64::from(v), off = const OFF, options(nostack, preserves_flags));
            }
        }
    };
}

width!(u32, "u32", load32_at, write32_at);
width!(u16, "u16", load16_at, write16_at);
