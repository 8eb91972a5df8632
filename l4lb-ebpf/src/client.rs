//! A balanced packet's client-side 5-tuple, in the form its
//! connection-table entry is keyed by: an IPv4 flow as the 16-byte
//! `L4LB_CONNTRACK4` key, built from registers ([`Key4`]), so the
//! established path never writes the 40-byte [`FlowKey`]; any other flow as
//! that full key. The rewrite reads the VIP side from it; the close tracking
//! (rare) expands it to the full key.
use l4lb_common::{Addr6, FlowKey, FlowKey4, v4_mapped};

// `FlowKey4::words` lays the key out as a little-endian machine stores it.
const _: () = assert!(cfg!(target_endian = "little"));

/// An IPv4 flow's connection-table key, stored as two 8-byte words.
#[repr(C, align(8))]
pub struct Key4([u64; 2]);

impl Key4 {
    /// Addresses and ports in network order.
    #[inline(always)]
    pub fn new(src: u32, dst: u32, sport: u16, dport: u16, proto: u8) -> Self {
        Key4(FlowKey4::words(src, dst, sport, dport, proto))
    }

    /// The key's two words (the connection table's slots compare them).
    #[inline(always)]
    pub fn words(&self) -> &[u64; 2] {
        &self.0
    }

    #[inline(always)]
    pub fn get(&self) -> &FlowKey4 {
        // SAFETY: 16 bytes of plain integers in `FlowKey4`'s layout (see
        // `FlowKey4::words`), aligned beyond its alignment.
        unsafe { &*(self as *const Key4).cast::<FlowKey4>() }
    }
}

/// The client-side 5-tuple, by reference.
#[derive(Clone, Copy)]
pub enum Client<'a> {
    /// Both addresses IPv4.
    V4(&'a FlowKey4),
    /// IPv6.
    V6(&'a FlowKey),
}

impl Client<'_> {
    #[inline(always)]
    pub fn proto(&self) -> u8 {
        match self {
            Client::V4(k) => k.proto,
            Client::V6(k) => k.proto,
        }
    }

    /// The VIP's port, network order.
    #[inline(always)]
    pub fn dport(&self) -> u16 {
        match self {
            Client::V4(k) => k.dport,
            Client::V6(k) => k.dport,
        }
    }

    /// The VIP address's last word (all of an IPv4 address).
    #[inline(always)]
    pub fn dst4(&self) -> u32 {
        match self {
            Client::V4(k) => k.dst,
            Client::V6(k) => k.dst[3],
        }
    }

    /// The VIP address (IPv4-mapped for IPv4).
    #[inline(always)]
    pub fn dst(&self) -> Addr6 {
        match self {
            Client::V4(k) => v4_mapped(k.dst),
            Client::V6(k) => k.dst,
        }
    }

    /// The full key (a copy: only the close tracking needs it).
    #[inline(always)]
    pub fn key(&self) -> FlowKey {
        match self {
            Client::V4(k) => k.key(),
            Client::V6(k) => **k,
        }
    }
}
