//! The per-service slot table, shared by both datapaths: a Maglev lookup table
//! (Eisenbud et al., NSDI 2016) of prime size M holding backend ids.
//!
//! - The XDP path picks slot `hash(5-tuple) % M`: Maglev keeps most flows on
//!   their backend when the set changes (≈ 1/N remapped when one of N leaves).
//! - The socket hooks pick a uniformly random slot: a backend's share of new
//!   connections is its share of the slots, i.e. its weight.
//!
//! M is the smallest prime ≥ 100 × (backends with weight > 0) from a fixed
//! ladder, so every backend holds within 1 % of its fair share, and M does not
//! change (which would reshuffle every flow) while the set shrinks or grows
//! within the ladder step. Weight 0 = no slot.
use sha1::{Digest, Sha1};

use l4lb_common::MAX_SLOTS_PER_SERVICE;

mod key;
pub use key::AddrKey;

/// Table sizes: primes roughly doubling. 65537 is Katran's default.
const PRIME_LADDER: [u32; 10] = [
    251, 503, 1009, 2003, 4001, 8009, 16007, 32003, 65537, 131_071,
];

/// Slots per live backend that keeps imbalance ≤ 1 %.
const SLOTS_PER_BACKEND: u32 = 100;

/// The table size for `live` backends, reusing `current` while it is big
/// enough and not oversized more than 8× (hysteresis against flapping sizes).
pub fn table_size(live: usize, current: u32) -> u32 {
    let need =
        (live as u64 * u64::from(SLOTS_PER_BACKEND)).min(u64::from(MAX_SLOTS_PER_SERVICE)) as u32;
    if PRIME_LADDER.contains(&current)
        && current >= need
        && current <= need.saturating_mul(8).max(PRIME_LADDER[0])
    {
        return current;
    }
    PRIME_LADDER
        .iter()
        .copied()
        .find(|&p| p >= need)
        .unwrap_or(MAX_SLOTS_PER_SERVICE)
        .min(MAX_SLOTS_PER_SERVICE)
}

/// True for a size `table_size` can return: a prime of the ladder (a table
/// of another size read from pinned maps is not one this agent wrote, and
/// `maglev` needs a prime).
pub fn is_table_size(m: u32) -> bool {
    PRIME_LADDER.contains(&m) || m == MAX_SLOTS_PER_SERVICE
}

/// (offset, skip) of a backend's permutation, from a stable hash of its key
/// (the address, so every node computes the same table for the same set).
fn permutation(key: &[u8], m: u32) -> (u64, u64) {
    let d = Sha1::digest(key);
    let h1 = u64::from_be_bytes(d[0..8].try_into().expect("20-byte digest"));
    let h2 = u64::from_be_bytes(d[8..16].try_into().expect("20-byte digest"));
    (h1 % u64::from(m), h2 % u64::from(m - 1) + 1)
}

/// One live backend's walk of its permutation.
struct Walker {
    id: u32,
    /// Slots it takes per round: its weight over the weights' gcd.
    turns: u32,
    /// Its next preferred slot, and the step to the one after (mod m).
    pos: u64,
    skip: u64,
}

/// Builds the table of size `m` for `(backend_id, key, weight)` members
/// (`key`: the address's text, [`AddrKey`]). Weights (divided by their
/// gcd) give each backend that many turns per round of the fill, so slot
/// shares follow weights.
pub fn maglev<K: AsRef<[u8]>>(members: &[(u32, K, u32)], m: u32) -> Vec<u32> {
    let mut live: Vec<&(u32, K, u32)> = members.iter().filter(|(_, _, w)| *w > 0).collect();
    // Fill order by key, not by id: ids are local to one agent, keys are the
    // same on every node, so every node builds the same table.
    live.sort_by(|a, b| a.1.as_ref().cmp(b.1.as_ref()));
    if live.is_empty() || m < 2 {
        return Vec::new();
    }
    let g = live.iter().fold(0, |g, (_, _, w)| gcd(g, *w));
    let mut walkers: Vec<Walker> = live
        .iter()
        .map(|(id, key, w)| {
            let (pos, skip) = permutation(key.as_ref(), m);
            let turns = w / g;
            Walker {
                id: *id,
                turns,
                pos,
                skip,
            }
        })
        .collect();
    // u32::MAX marks an empty slot (ids are < MAX_BACKENDS): the table is
    // built in the Vec the plan keeps, with no Option<u32> copy of twice the size.
    const EMPTY: u32 = u32::MAX;
    let m64 = u64::from(m);
    let mut table: Vec<u32> = vec![EMPTY; m as usize];
    let mut filled = 0u32;
    'fill: loop {
        for w in walkers.iter_mut() {
            // Each backend walks its permutation offset, offset+skip, … (mod
            // m), advanced by one add and one compare instead of a multiply
            // and a division per probe, its position held in a register for
            // its turns (this loop is most of a full sync's fill).
            let mut pos = w.pos;
            for _ in 0..w.turns {
                // Next preferred slot of this backend that is still empty.
                let slot = loop {
                    let c = pos as usize;
                    pos += w.skip;
                    if pos >= m64 {
                        pos -= m64;
                    }
                    if table[c] == EMPTY {
                        break c;
                    }
                };
                table[slot] = w.id;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
            w.pos = pos;
        }
    }
    debug_assert!(!table.contains(&EMPTY), "every slot filled");
    table
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u32) -> Vec<(u32, String, u32)> {
        (1..=n)
            .map(|i| (i, format!("10.0.{}.{}:80", i / 250, i % 250), 1))
            .collect()
    }

    fn count(table: &[u32], id: u32) -> usize {
        table.iter().filter(|&&x| x == id).count()
    }

    #[test]
    fn sizes_come_from_the_ladder_and_stick() {
        assert_eq!(table_size(1, 0), 251);
        assert_eq!(table_size(3, 0), 503);
        assert_eq!(table_size(5, 0), 503);
        assert_eq!(table_size(10, 0), 1009);
        assert_eq!(table_size(50, 0), 8009);
        // Shrinking from 5 to 4 backends keeps M (no reshuffle)…
        assert_eq!(table_size(4, 503), 503);
        // … growing past it moves up the ladder.
        assert_eq!(table_size(6, 503), 1009);
        // Far too big for what is left: shrink.
        assert_eq!(table_size(1, 8009), 251);
    }

    #[test]
    fn every_backend_within_one_percent_of_fair() {
        for n in [1u32, 2, 3, 5, 10, 50] {
            let m = table_size(n as usize, 0);
            let t = maglev(&members(n), m);
            assert_eq!(t.len(), m as usize);
            let fair = f64::from(m) / f64::from(n);
            for id in 1..=n {
                let c = count(&t, id) as f64;
                assert!(
                    (c - fair).abs() / fair <= 0.01 + 1.0 / fair,
                    "n={n} backend {id}: {c} slots, fair {fair:.1}"
                );
            }
        }
    }

    #[test]
    fn removing_one_of_n_remaps_few_slots() {
        for n in [5u32, 10, 50] {
            let all = members(n);
            let m = table_size(n as usize, 0);
            let before = maglev(&all, m);
            let removed = n / 2 + 1;
            let rest: Vec<_> = all
                .iter()
                .filter(|(id, _, _)| *id != removed)
                .cloned()
                .collect();
            let m2 = table_size(rest.len(), m);
            assert_eq!(m2, m, "the table size must not change on removal");
            let after = maglev(&rest, m2);
            // Slots that pointed at surviving backends and now point elsewhere.
            let moved = before
                .iter()
                .zip(&after)
                .filter(|(b, a)| **b != removed && b != a)
                .count();
            let share = moved as f64 / f64::from(m);
            assert!(
                share <= 1.2 / f64::from(n),
                "n={n}: {share:.4} of slots of surviving backends moved"
            );
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let t = maglev(&[(1, "a", 3), (2, "b", 1)], 503);
        let a = count(&t, 1) as f64 / 503.0;
        assert!((a - 0.75).abs() < 0.01, "{a}");
        let t = maglev(&[(1, "a", 0), (2, "b", 2)], 251);
        assert!(t.iter().all(|&x| x == 2));
        assert!(maglev(&[(1, "a", 0)], 251).is_empty());
        assert!(maglev::<&str>(&[], 251).is_empty());
    }

    #[test]
    fn same_set_same_table_in_any_order() {
        let mut m = members(10);
        let a = maglev(&m, 1009);
        m.reverse();
        assert_eq!(maglev(&m, 1009), a);
        // Other ids for the same addresses (another node): same backends per slot.
        let renumbered: Vec<_> = m
            .iter()
            .map(|(id, k, w)| (id + 100, k.clone(), *w))
            .collect();
        let b = maglev(&renumbered, 1009);
        assert!(a.iter().zip(&b).all(|(x, y)| x + 100 == *y));
    }
}
