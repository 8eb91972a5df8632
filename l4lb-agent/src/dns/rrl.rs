//! Response-rate limiting for UDP (the idea of BIND's RRL, simplified): each
//! client prefix (/24 for IPv4, /56 for IPv6) has a token bucket of `rps`
//! responses per second (burst: one second's worth). A query over the limit
//! is not answered, except every `slip`-th one, which gets an empty
//! truncated (TC) reply: a real client retries over TCP, which a spoofed
//! source cannot, and the reply is no larger than the query.
//!
//! A fixed table of slots found by a keyed hash: no allocation per packet and
//! a bounded size whatever the sources. A slot held by another prefix is only
//! taken over once its bucket is full again (idle for a second); until then
//! the newcomer is charged to it. Collisions therefore make the limit
//! stricter for the two prefixes, never looser, so spoofing many sources
//! cannot reset a victim's bucket.
use std::{hash::BuildHasher, net::IpAddr, time::Instant};

use ipnet::IpNet;

use super::acl;

/// Slots per listener (24 bytes each).
pub const SLOTS: usize = 4096;

/// Limits for one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrlConfig {
    /// Responses per second per client prefix; 0 = off.
    pub rps: u32,
    /// Every `slip`-th dropped response goes out truncated; 0 = none.
    pub slip: u32,
    /// Clients never limited.
    pub exempt: Vec<IpNet>,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            rps: 100,
            slip: 2,
            exempt: acl::loopback(),
        }
    }
}

/// What to do with one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send an empty reply with TC instead.
    Slip,
    Drop,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The prefix (see [`prefix_key`]); 0 = never used.
    key: u64,
    /// Thousandths of a response.
    tokens: u64,
    /// Milliseconds since the table's epoch at the last refill.
    at_ms: u32,
    /// Responses dropped since the slot was (re)claimed, for the slip.
    dropped: u32,
}

pub struct Rrl {
    cfg: RrlConfig,
    slots: Box<[Slot]>,
    hasher: std::hash::RandomState,
    epoch: Instant,
}

impl Rrl {
    pub fn new(cfg: RrlConfig) -> Self {
        Rrl {
            cfg,
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            hasher: std::hash::RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Accounts one response to `client` at `now`.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Verdict {
        if self.cfg.rps == 0 || acl::contains(&self.cfg.exempt, client) {
            return Verdict::Send;
        }
        let key = prefix_key(client);
        let cap = u64::from(self.cfg.rps) * 1000;
        // Wraps after 49 days: a slot that old refills in full either way.
        let now_ms = now
            .saturating_duration_since(self.epoch)
            .as_millis()
            .min(u128::from(u32::MAX)) as u32;
        let idx = (self.hasher.hash_one(key) % SLOTS as u64) as usize;
        let slot = &mut self.slots[idx];
        let elapsed = u64::from(now_ms.wrapping_sub(slot.at_ms));
        slot.tokens = (slot.tokens + elapsed * u64::from(self.cfg.rps)).min(cap);
        slot.at_ms = now_ms;
        if slot.key != key && (slot.key == 0 || slot.tokens == cap) {
            *slot = Slot {
                key,
                tokens: cap,
                at_ms: now_ms,
                dropped: 0,
            };
        }
        if slot.tokens >= 1000 {
            slot.tokens -= 1000;
            return Verdict::Send;
        }
        slot.dropped = slot.dropped.wrapping_add(1);
        if self.cfg.slip > 0 && slot.dropped.is_multiple_of(self.cfg.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// A nonzero key per /24 (IPv4) or /56 (IPv6), the two families apart.
fn prefix_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => (1 << 63) | u64::from(u32::from(v4) >> 8),
        // 56 bits: below bit 63, and never 0 thanks to bit 62.
        IpAddr::V6(v6) => (1 << 62) | (u128::from(v6) >> 72) as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rrl(rps: u32, slip: u32) -> Rrl {
        Rrl::new(RrlConfig {
            rps,
            slip,
            exempt: acl::loopback(),
        })
    }

    fn tally(r: &mut Rrl, client: &str, n: usize, now: Instant) -> [usize; 3] {
        let mut t = [0; 3];
        for _ in 0..n {
            t[r.check(ip(client), now) as usize] += 1;
        }
        t
    }

    #[test]
    fn bucket_limits_and_refills() {
        let mut r = rrl(10, 2);
        let t0 = Instant::now();
        // Burst of 10, then every other drop slips.
        assert_eq!(tally(&mut r, "198.18.0.1", 30, t0), [10, 10, 10]);
        // Same /24: the same bucket.
        assert_eq!(tally(&mut r, "198.18.0.200", 2, t0), [0, 1, 1]);
        // Another /24: its own.
        assert_eq!(tally(&mut r, "198.18.1.1", 10, t0), [10, 0, 0]);
        // 500 ms later: 5 more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(tally(&mut r, "198.18.0.1", 6, t1)[0], 5);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!(tally(&mut r, "198.18.0.1", 20, t2)[0], 10);
    }

    #[test]
    fn ipv6_prefix_is_56_bits_and_exempt_and_off() {
        let mut r = rrl(1, 0);
        let t0 = Instant::now();
        assert_eq!(tally(&mut r, "fd00:0:0:ab::1", 3, t0), [1, 0, 2]);
        assert_eq!(
            tally(&mut r, "fd00:0:0:ff::2", 1, t0),
            [0, 0, 1],
            "same /56"
        );
        assert_eq!(
            tally(&mut r, "fd00:0:0:100::1", 1, t0),
            [1, 0, 0],
            "next /56"
        );
        assert_eq!(tally(&mut r, "127.0.0.1", 50, t0), [50, 0, 0]);
        assert_eq!(tally(&mut r, "::ffff:127.0.0.1", 5, t0), [5, 0, 0]);
        assert_eq!(tally(&mut r, "::1", 5, t0), [5, 0, 0]);
        let mut off = rrl(0, 2);
        assert_eq!(tally(&mut off, "198.18.0.1", 1000, t0), [1000, 0, 0]);
    }

    #[test]
    fn many_spoofed_sources_do_not_reset_a_victim() {
        let mut r = rrl(5, 0);
        let t0 = Instant::now();
        assert_eq!(tally(&mut r, "198.18.0.1", 5, t0)[0], 5);
        // More prefixes than slots, all at once.
        for i in 0..(SLOTS as u32 * 2) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8));
            r.check(IpAddr::V4(a), t0);
        }
        assert_eq!(tally(&mut r, "198.18.0.1", 5, t0)[0], 0);
    }
}
