//! A set of small ids as bits: the counter ids known to be zero are dense
//! (handed out lowest first), so a full sync's 60,000 marks are 8 KB of bits
//! where a hash set hashed each id and grew by rehashing.

/// Ids marked so far.
#[derive(Default)]
pub struct IdBits(Vec<u64>);

impl IdBits {
    /// Marks `id`; true if it was not marked before.
    pub fn insert(&mut self, id: u32) -> bool {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::IdBits;

    /// Matches a hash set's `insert` over ids in and across words, repeated.
    #[test]
    fn insert_says_first_time_only() {
        let mut bits = IdBits::default();
        let mut set = std::collections::HashSet::new();
        for id in [
            0u32, 63, 64, 1, 0, 65_535, 64, 200_000, 63, 199_999, 200_000,
        ] {
            assert_eq!(bits.insert(id), set.insert(id), "id {id}");
        }
    }
}
