//! Names as the zones keep them: lower-cased wire labels (each label's
//! length, then its bytes; the root's empty label left out), in one
//! allocation of the name's length.
//!
//! A hickory [`Name`] is ~80 bytes inline, plus a heap copy of its labels
//! when they pass 32 bytes (a task's canonical name does); a zone holds one
//! per name and one per SRV target. The bytes here order as [`Name`] does
//! (RFC 4034 canonical order, [`canonical_cmp`]) and compare equal exactly
//! when the lower-cased names do, so answers and transfers see the zones as
//! before.
use std::{borrow::Borrow, cmp::Ordering, fmt, sync::Arc};

use hickory_proto::rr::{LowerName, Name};

/// The longest name in wire form (RFC 1035 §3.1), root label included.
pub(crate) const MAX_WIRE: usize = 255;

/// The lower-cased wire labels of `name` written into `buf`; the slice
/// used. `None` if they do not fit (a [`Name`] never exceeds 255 bytes).
pub(crate) fn encode_into<'b>(name: &Name, buf: &'b mut [u8; MAX_WIRE]) -> Option<&'b [u8]> {
    let mut len = 0;
    for label in name.iter() {
        let end = len + 1 + label.len();
        if end > MAX_WIRE || label.len() > 63 {
            return None;
        }
        buf[len] = label.len() as u8;
        buf[len + 1..end].copy_from_slice(label);
        buf[len + 1..end].make_ascii_lowercase();
        len = end;
    }
    Some(&buf[..len])
}

/// The lower-cased wire labels of `name`, as owned bytes.
fn encode(name: &Name) -> Vec<u8> {
    let mut buf = [0u8; MAX_WIRE];
    encode_into(name, &mut buf).unwrap_or_default().to_vec()
}

/// `prefix.<origin>` as lower-cased wire labels, for a prefix of plain
/// labels (letters, digits, `-` and `_`; `-` not first), which is what the
/// zones' names are made of: `Some(None)` when such a prefix makes no valid
/// name (an empty label, a label over 63 bytes, a name over 255), exactly
/// where [`Name::from_ascii`] refuses it. `None` for any other prefix
/// (escapes, wildcards): the caller parses those with hickory.
pub(crate) fn plain_prefixed(prefix: &str, origin: &[u8]) -> Option<Option<WireName>> {
    let mut out = Vec::with_capacity(prefix.len() + 1 + origin.len());
    for label in prefix.split('.') {
        let mut bytes = label.bytes();
        let first_ok = bytes
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric() || b == b'_');
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !(first_ok && rest_ok) {
            return None;
        }
        if label.is_empty() || label.len() > 63 {
            return Some(None);
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    out.extend_from_slice(origin);
    // hickory counts the root label too: at most 255 with it.
    Some((out.len() < MAX_WIRE).then(|| WireName(out.into_boxed_slice())))
}

/// The labels of wire bytes, left to right; stops at a malformed length.
pub(crate) fn labels(mut wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = wire.split_first()?;
        let label = rest.get(..usize::from(len))?;
        wire = &rest[usize::from(len)..];
        Some(label)
    })
}

/// The absolute [`Name`] of wire bytes (already lower case).
pub(crate) fn decode(wire: &[u8]) -> Name {
    let mut name = Name::from_labels(labels(wire)).unwrap_or_else(|_| Name::root());
    name.set_fqdn(true);
    name
}

/// The name one label up (`b.c` for `a.b.c`); the root's is itself.
pub(crate) fn parent(wire: &[u8]) -> &[u8] {
    match wire.split_first() {
        Some((&len, rest)) => rest.get(usize::from(len)..).unwrap_or_default(),
        None => wire,
    }
}

/// True if `name` is `zone` or below it (label-wise suffix).
pub(crate) fn is_within(name: &[u8], zone: &[u8]) -> bool {
    let mut n = name;
    while n.len() > zone.len() {
        n = parent(n);
    }
    n == zone
}

/// RFC 4034 §6.1 canonical order of lower-cased wire names: the labels
/// compared right to left as octet strings, then the shorter name first;
/// [`Name`]'s `Ord`, which the zones served in before.
pub(crate) fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let mut la = [&[][..]; 128];
    let mut lb = [&[][..]; 128];
    let na = fill(&mut la, a);
    let nb = fill(&mut lb, b);
    let pairs = la[..na].iter().rev().zip(lb[..nb].iter().rev());
    for (x, y) in pairs {
        match x.cmp(y) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    na.cmp(&nb)
}

fn fill<'a>(out: &mut [&'a [u8]; 128], wire: &'a [u8]) -> usize {
    let mut n = 0;
    for (slot, label) in out.iter_mut().zip(labels(wire)) {
        *slot = label;
        n += 1;
    }
    n
}

/// A zone's name: one exact-sized allocation. Hashes, compares and orders
/// as its bytes (not canonically: [`canonical_cmp`] is that order), so a map
/// keyed by it is searched with a borrowed `&[u8]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WireName(Box<[u8]>);

impl WireName {
    pub(crate) fn new(name: &Name) -> Self {
        WireName(encode(name).into_boxed_slice())
    }

    pub(crate) fn to_name(&self) -> Name {
        decode(&self.0)
    }
}

impl From<&[u8]> for WireName {
    fn from(wire: &[u8]) -> Self {
        WireName(wire.into())
    }
}

impl From<&LowerName> for WireName {
    fn from(name: &LowerName) -> Self {
        WireName::new(&Name::from(name.clone()))
    }
}

impl Borrow<[u8]> for WireName {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for WireName {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WireName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_name())
    }
}

/// A name of a zone as the zone keeps it; prints as the (lower-cased,
/// absolute) name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ZoneName<'a>(&'a [u8]);

impl<'a> ZoneName<'a> {
    pub(crate) fn new(wire: &'a [u8]) -> Self {
        ZoneName(wire)
    }

    pub fn to_name(&self) -> Name {
        decode(self.0)
    }
}

impl fmt::Display for ZoneName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_name())
    }
}

impl fmt::Debug for ZoneName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_name())
    }
}

/// An SRV target: shared by every SRV value that points at it (a task's
/// canonical name is the target of each of its app's SRV names).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target(Arc<[u8]>);

impl Target {
    pub(crate) fn new(name: &Name) -> Self {
        Target(encode(name).into())
    }

    pub(crate) fn to_name(&self) -> Name {
        decode(&self.0)
    }
}

impl From<Name> for Target {
    fn from(name: Name) -> Self {
        Target::new(&name)
    }
}

impl From<&WireName> for Target {
    fn from(name: &WireName) -> Self {
        Target(name.0.as_ref().into())
    }
}

impl From<WireName> for Target {
    fn from(name: WireName) -> Self {
        Target::from(&name)
    }
}

impl Ord for Target {
    fn cmp(&self, other: &Self) -> Ordering {
        canonical_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for Target {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`plain_prefixed`] stands in for: hickory's parse of the whole
    /// name, lower-cased.
    fn parsed(prefix: &str, origin: &str) -> Option<WireName> {
        let mut name = Name::from_ascii(format!("{prefix}.{origin}.")).ok()?;
        name.set_fqdn(true);
        Some(WireName::new(&name))
    }

    #[test]
    fn plain_prefixes_make_the_names_hickory_parses() {
        let origin = "dcos.thisdcos.directory";
        let wire = parsed("x", origin).unwrap();
        let origin_wire = &wire[2..];
        let long = |n: usize| "a".repeat(n);
        let mut cases: Vec<String> = [
            "redis",
            "Big-Dog.marathon",
            "_redis._tcp.marathon",
            "a_b",
            "9x",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "",
            "a-.b",
            "_",
            "x.-y",
            "UPPER.Case",
            "a b",
            "a*",
            "*",
            "a\\.b",
            "é",
        ]
        .map(String::from)
        .to_vec();
        for n in [62, 63, 64] {
            cases.push(long(n));
            cases.push(format!("{}.x", long(n)));
        }
        // Names right at hickory's 255-byte bound, and one byte past it.
        for n in 210..=235 {
            cases.push(format!("{}.{}.{}", long(63), long(63), long(n - 126)));
        }
        for prefix in &cases {
            let fast = plain_prefixed(prefix, origin_wire);
            if let Some(fast) = fast {
                assert_eq!(fast, parsed(prefix, origin), "{prefix:?}");
            } else {
                let plain = prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                assert!(
                    !plain || prefix.split('.').any(|l| l.starts_with('-')),
                    "{prefix:?}"
                );
            }
        }
    }

    /// `s` as an absolute name; `\001` and `\200` are those octets.
    fn n(s: &str) -> Name {
        let label = |l: &str| match l {
            "\\001" => vec![1u8],
            "\\200" => vec![200u8],
            l => l.as_bytes().to_vec(),
        };
        let labels = s.split('.').filter(|l| !l.is_empty()).map(label);
        let mut name = Name::from_labels(labels).unwrap();
        name.set_fqdn(true);
        name
    }

    /// The order and equality of [`Name`] (case-insensitive canonical).
    #[test]
    fn orders_as_names() {
        let names = [
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "Z.a.example.",
            "zABC.a.EXAMPLE.",
            "z.example.",
            "\\001.z.example.",
            "*.z.example.",
            "\\200.z.example.",
            "_a._tcp.marathon.mesos.",
            "a-1.marathon.mesos.",
            "a.marathon.mesos.",
            "a.b.marathon.mesos.",
            "mesos.",
            ".",
        ];
        for x in names {
            for y in names {
                let (a, b) = (WireName::new(&n(x)), WireName::new(&n(y)));
                assert_eq!(canonical_cmp(&a, &b), n(x).cmp(&n(y)), "{x} {y}");
                assert_eq!(a == b, n(x) == n(y), "{x} {y}");
                let (a, b) = (Target::new(&n(x)), Target::new(&n(y)));
                assert_eq!(a.cmp(&b), n(x).cmp(&n(y)), "{x} {y}");
            }
        }
    }

    #[test]
    fn round_trips_lower_cased() {
        for s in [
            "Redis.Marathon.MESOS.",
            "_x._tcp.a.",
            ".",
            "\\200.z.example.",
        ] {
            let w = WireName::new(&n(s));
            assert_eq!(w.to_name(), n(s));
            assert_eq!(w.to_name().to_string(), n(s).to_lowercase().to_string());
            assert!(w.to_name().is_fqdn());
            assert_eq!(Target::new(&n(s)).to_name(), n(s));
        }
    }

    #[test]
    fn parents_and_zones() {
        let w = WireName::new(&n("a.b.mesos."));
        let zone = WireName::new(&n("mesos."));
        assert_eq!(parent(&w), &WireName::new(&n("b.mesos."))[..]);
        let root: &[u8] = &[];
        assert_eq!(parent(parent(parent(&w))), root);
        assert_eq!(parent(root), root);
        assert!(is_within(&w, &zone));
        assert!(is_within(&zone, &zone));
        assert!(!is_within(&zone, &w));
        assert!(!is_within(&WireName::new(&n("xmesos.")), &zone));
        assert!(!is_within(&WireName::new(&n("a.b.mesos.x.")), &zone));
        // A malformed length ends the walk instead of reading past the end.
        assert!(!is_within(&[9, b'a'], &zone));
        assert_eq!(parent(&[9, b'a']), root);
    }
}
