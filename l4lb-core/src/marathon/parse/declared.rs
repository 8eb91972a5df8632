//! [`Declared`]: what the incremental catalog keeps per group (datapath
//! VIP): the parts that declare it and what its last merge and derive
//! gave. One per group, so it holds no allocation in the common case of
//! one part declaring the group.
use super::catalog::Families;

/// The parts that declare a group, the families of its backends when last
/// merged, and, for a named group, the families it has a VIP in (its
/// services as last derived: at the address its name had then, one per
/// family). The merged group itself is not kept: it is made again from
/// those parts when its services are (held for every VIP, its label, app
/// and backend sets were a third of the Marathon source's heap at 10,000
/// apps).
#[derive(Clone, Debug)]
pub(super) struct Declared<K> {
    parts: Parts<K>,
    pub(super) families: Families,
    pub(super) vips: Families,
}

impl<K> Default for Declared<K> {
    fn default() -> Self {
        Declared {
            parts: Parts::Many(Vec::new()),
            families: Families::default(),
            vips: Families::default(),
        }
    }
}

/// Sorted, each once: one part inline (a vector grown from empty holds
/// four: 96 B a group where one key is 24), more in a vector.
#[derive(Clone, Debug)]
enum Parts<K> {
    One(K),
    Many(Vec<K>),
}

impl<K: Ord + Clone> Declared<K> {
    /// The parts, in key order.
    pub(super) fn parts(&self) -> &[K] {
        match &self.parts {
            Parts::One(k) => std::slice::from_ref(k),
            Parts::Many(v) => v,
        }
    }

    pub(super) fn add(&mut self, id: &K) {
        let i = match self.parts().binary_search(id) {
            Ok(_) => return,
            Err(i) => i,
        };
        self.parts = match std::mem::replace(&mut self.parts, Parts::Many(Vec::new())) {
            Parts::Many(v) if v.is_empty() => Parts::One(id.clone()),
            Parts::One(k) => {
                let mut v = vec![k];
                v.insert(i, id.clone());
                Parts::Many(v)
            }
            Parts::Many(mut v) => {
                v.insert(i, id.clone());
                Parts::Many(v)
            }
        };
    }

    pub(super) fn remove(&mut self, id: &K) {
        match &mut self.parts {
            Parts::One(k) if k == id => self.parts = Parts::Many(Vec::new()),
            Parts::One(_) => {}
            Parts::Many(v) => {
                if let Ok(i) = v.binary_search(id) {
                    v.remove(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adds and removes keep the parts sorted, each once, as a sorted
    /// vector would, through every shape (none, one, many, back to one).
    #[test]
    fn parts_stay_sorted_and_unique_through_adds_and_removes() {
        let steps: [(bool, u8); 10] = [
            (true, 5),
            (true, 5),
            (true, 2),
            (true, 9),
            (false, 5),
            (false, 7),
            (false, 2),
            (false, 9),
            (true, 3),
            (false, 3),
        ];
        let mut d = Declared::default();
        let mut want: Vec<u8> = Vec::new();
        for (add, id) in steps {
            match (add, want.binary_search(&id)) {
                (true, Err(i)) => want.insert(i, id),
                (false, Ok(i)) => drop(want.remove(i)),
                _ => {}
            }
            match add {
                true => d.add(&id),
                false => d.remove(&id),
            }
            assert_eq!(d.parts(), &want[..], "after {add} {id}");
        }
    }
}
