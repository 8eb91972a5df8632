//! A set of small ids as bits: the counter ids known to be zero are dense
//! (handed out lowest first), so a full sync's 60,000 marks are 8 KB of bits
//! where a hash set hashed each id and grew by rehashing.

/// Ids below a limit marked so far.
pub struct IdBits {
    words: Vec<u64>,
    /// Ids from here on are never marked (the map's capacity: a larger id,
    /// read back from corrupt pins, must not size the bits).
    limit: u32,
}

impl IdBits {
    pub fn below(limit: u32) -> IdBits {
        IdBits {
            words: Vec::new(),
            limit,
        }
    }

    /// Marks `id`; true if it was not marked before. An id at or past the
    /// limit is not marked: false.
    pub fn insert(&mut self, id: u32) -> bool {
        if id >= self.limit {
            return false;
        }
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::IdBits;

    /// Matches a hash set's `insert` over ids in and across words, repeated.
    #[test]
    fn insert_says_first_time_only() {
        let mut bits = IdBits::below(u32::MAX);
        let mut set = std::collections::HashSet::new();
        for id in [
            0u32, 63, 64, 1, 0, 65_535, 64, 200_000, 63, 199_999, 200_000,
        ] {
            assert_eq!(bits.insert(id), set.insert(id), "id {id}");
        }
    }

    /// An id past the limit is never marked and sizes nothing.
    #[test]
    fn ids_past_the_limit_are_not_marked() {
        let mut bits = IdBits::below(128);
        assert!(bits.insert(127));
        assert!(!bits.insert(128));
        assert!(!bits.insert(u32::MAX));
        assert!(!bits.insert(u32::MAX));
        assert_eq!(bits.words.len(), 2);
    }
}
