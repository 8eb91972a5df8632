//! A port's protocol list in one byte: one task record holds one per port,
//! and 50,000 tasks' one-element `Vec`s cost 24 bytes and an allocation
//! each.
use std::{fmt, ops::Deref};

use serde::{Serialize, Serializer};

use super::Proto;

/// Every list a port can declare: each protocol at most once, in the order
/// declared (`udp,tcp` stays `udp,tcp`, as the DNS records are made in it).
const LISTS: [&[Proto]; 5] = [
    &[],
    &[Proto::Tcp],
    &[Proto::Udp],
    &[Proto::Tcp, Proto::Udp],
    &[Proto::Udp, Proto::Tcp],
];

/// A port's protocols, each once, in the order declared; reads as a slice.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Protocols(u8);

impl Protocols {
    /// `list` with repeats dropped (the first of each is kept).
    pub fn new(list: &[Proto]) -> Protocols {
        let first = list.first();
        let other = list.iter().find(|p| Some(*p) != first);
        Protocols(match (first, other) {
            (None, _) => 0,
            (Some(Proto::Tcp), None) => 1,
            (Some(Proto::Udp), None) => 2,
            (Some(Proto::Tcp), Some(_)) => 3,
            (Some(Proto::Udp), Some(_)) => 4,
        })
    }

    pub fn as_slice(&self) -> &'static [Proto] {
        LISTS[usize::from(self.0)]
    }

    /// The byte it is held in (for a packed record).
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    /// The protocols `bits` stands for; None for no list.
    pub(crate) fn from_bits(bits: u8) -> Option<Protocols> {
        (usize::from(bits) < LISTS.len()).then_some(Protocols(bits))
    }
}

impl Deref for Protocols {
    type Target = [Proto];
    fn deref(&self) -> &[Proto] {
        self.as_slice()
    }
}

impl IntoIterator for &Protocols {
    type Item = &'static Proto;
    type IntoIter = std::slice::Iter<'static, Proto>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl From<&[Proto]> for Protocols {
    fn from(list: &[Proto]) -> Protocols {
        Protocols::new(list)
    }
}

impl From<Vec<Proto>> for Protocols {
    fn from(list: Vec<Proto>) -> Protocols {
        Protocols::new(&list)
    }
}

impl<const N: usize> From<[Proto; N]> for Protocols {
    fn from(list: [Proto; N]) -> Protocols {
        Protocols::new(&list)
    }
}

impl<const N: usize> PartialEq<[Proto; N]> for Protocols {
    fn eq(&self, other: &[Proto; N]) -> bool {
        self.as_slice() == other
    }
}

impl fmt::Debug for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// As the list it stands for (the JSON of a `Vec<Proto>`).
impl Serialize for Protocols {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_order_declared_and_each_once() {
        use Proto::{Tcp, Udp};
        for (list, want) in [
            (&[][..], &[][..]),
            (&[Tcp], &[Tcp]),
            (&[Udp, Udp], &[Udp]),
            (&[Tcp, Udp, Tcp], &[Tcp, Udp]),
            (&[Udp, Tcp], &[Udp, Tcp]),
        ] {
            let p = Protocols::new(list);
            assert_eq!(&*p, want, "{list:?}");
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                serde_json::to_string(want).unwrap()
            );
        }
        assert_eq!(std::mem::size_of::<Protocols>(), 1);
    }
}
