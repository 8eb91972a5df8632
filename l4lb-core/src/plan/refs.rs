//! [`Refs`]: how many services name each backend id. Ids are small and
//! dense (taken lowest first), so the counts are a vector indexed by id: 4
//! bytes an id and no hashing, where a hash map of 50,000 ids held 0.6 MB.
#[derive(Clone, Debug, Default)]
pub(super) struct Refs(Vec<u32>);

impl Refs {
    /// A service now names `ids`.
    pub(super) fn name(&mut self, ids: impl Iterator<Item = u32>) {
        for id in ids {
            let i = id as usize;
            if self.0.len() <= i {
                self.0.resize(i + 1, 0);
            }
            self.0[i] += 1;
        }
    }

    /// A service no longer names `ids` (an id no service names stays at 0).
    pub(super) fn unname(&mut self, ids: impl Iterator<Item = u32>) {
        for id in ids {
            if let Some(n) = self.0.get_mut(id as usize) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// True if some service names backend `id`.
    pub(super) fn named(&self, id: u32) -> bool {
        self.0.get(id as usize).is_some_and(|n| *n > 0)
    }

    /// The counts up to the last id some service names.
    fn named_part(&self) -> &[u32] {
        let len = self.0.iter().rposition(|n| *n > 0).map_or(0, |i| i + 1);
        &self.0[..len]
    }
}

/// Equal when the same ids are named as often, however far each grew.
impl PartialEq for Refs {
    fn eq(&self, other: &Refs) -> bool {
        self.named_part() == other.named_part()
    }
}

impl Eq for Refs {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_id_and_compares_what_is_named() {
        let mut r = Refs::default();
        r.name([3, 1, 3].into_iter());
        assert!(r.named(3) && r.named(1) && !r.named(2) && !r.named(900));
        r.unname([3, 3, 7].into_iter());
        assert!(!r.named(3) && r.named(1));
        let mut small = Refs::default();
        small.name([1].into_iter());
        assert_eq!(r, small);
        small.name([2].into_iter());
        assert_ne!(r, small);
    }
}
