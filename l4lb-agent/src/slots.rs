//! The per-service slot table: a list of backend ids in which each backend
//! appears in proportion to its weight. The socket hooks pick a uniformly random
//! slot, so a backend's share of new connections is its share of the slots.
use l4lb_common::MAX_SLOTS_PER_SERVICE;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Builds the slot table for `(backend_id, weight)` pairs (weight 0 = no slot).
/// Weights are divided by their gcd so 1:1:1 takes 3 slots, not 300, and scaled
/// down proportionally (never below one slot) if they would exceed
/// `MAX_SLOTS_PER_SERVICE`. Slots are interleaved round-robin so that any
/// prefix of the table is already roughly balanced.
pub fn slot_table(members: &[(u32, u32)]) -> Vec<u32> {
    let live: Vec<(u32, u32)> = members.iter().copied().filter(|&(_, w)| w > 0).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let g = live.iter().fold(0, |g, &(_, w)| gcd(g, w));
    let mut reduced: Vec<(u32, u64)> = live.iter().map(|&(id, w)| (id, u64::from(w / g))).collect();
    let total: u64 = reduced.iter().map(|&(_, w)| w).sum();
    let cap = u64::from(MAX_SLOTS_PER_SERVICE);
    if total > cap {
        for (_, w) in &mut reduced {
            *w = (*w * cap / total).max(1);
        }
    }
    let mut table = Vec::with_capacity(reduced.iter().map(|&(_, w)| w as usize).sum());
    let max = reduced.iter().map(|&(_, w)| w).max().unwrap_or(0);
    for round in 0..max {
        for &(id, w) in &reduced {
            if round < w {
                table.push(id);
            }
        }
    }
    table.truncate(MAX_SLOTS_PER_SERVICE as usize);
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(table: &[u32], id: u32) -> usize {
        table.iter().filter(|&&x| x == id).count()
    }

    #[test]
    fn equal_weights_take_one_slot_each() {
        assert_eq!(slot_table(&[(1, 1), (2, 1), (3, 1)]), vec![1, 2, 3]);
        assert_eq!(slot_table(&[(1, 50), (2, 50)]), vec![1, 2]);
    }

    #[test]
    fn weights_are_proportional_and_reduced() {
        let t = slot_table(&[(1, 3), (2, 1)]);
        assert_eq!((count(&t, 1), count(&t, 2)), (3, 1));
        let t = slot_table(&[(1, 6), (2, 4)]);
        assert_eq!((count(&t, 1), count(&t, 2)), (3, 2));
    }

    #[test]
    fn weight_zero_gets_no_slot() {
        assert_eq!(slot_table(&[(1, 0), (2, 2)]), vec![2]);
        assert!(slot_table(&[(1, 0)]).is_empty());
        assert!(slot_table(&[]).is_empty());
    }

    #[test]
    fn large_sets_are_capped_and_keep_every_backend() {
        let members: Vec<(u32, u32)> = (1..=20_000).map(|id| (id, 1 + id % 2)).collect();
        let t = slot_table(&members);
        assert!(t.len() <= MAX_SLOTS_PER_SERVICE as usize);
        // With 20k backends above the cap, some lose their slot only through the
        // final truncation; proportional scaling itself never drops a backend.
        let few: Vec<(u32, u32)> = (1..=100).map(|id| (id, 100)).collect();
        assert_eq!(slot_table(&few).len(), 100);
    }

    #[test]
    fn interleaved() {
        assert_eq!(slot_table(&[(1, 2), (2, 1)]), vec![1, 2, 1]);
    }
}
