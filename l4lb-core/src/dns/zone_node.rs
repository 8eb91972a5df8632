//! One name of a zone as the zones keep it: its data values, not records.
//!
//! A hickory [`Record`] carries its own owner name and a data enum sized for
//! every record type: ~490 bytes each at 10,000 tasks, where the value is an
//! address or a port and a target. The owner is the map key already, and an
//! answer rewrites it as the client asked (0x20 case), so records are made
//! when read ([`Records`]), from the values and the zone's TTL.
use std::{cmp::Ordering, net::IpAddr};

use hickory_proto::rr::{
    Name, RData, Record, RecordType,
    rdata::{A, AAAA, SRV},
};

use super::wire_name::{Target, decode};

/// One record's data. Ordered as a zone serves a name's records: addresses
/// by address, then SRVs by port and target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Value {
    Addr(IpAddr),
    /// Port and target (priority 0, weight 1, as Mesos-DNS). The target is
    /// shared: each of a task's SRV values points at one copy of its name.
    Srv(u16, Target),
}

impl Value {
    pub(crate) fn rdata(&self) -> RData {
        match self {
            Value::Addr(IpAddr::V4(a)) => RData::A(A(*a)),
            Value::Addr(IpAddr::V6(a)) => RData::AAAA(AAAA(*a)),
            Value::Srv(port, target) => RData::SRV(SRV::new(0, 1, *port, target.to_name())),
        }
    }

    pub(crate) fn record_type(&self) -> RecordType {
        match self {
            Value::Addr(IpAddr::V4(_)) => RecordType::A,
            Value::Addr(IpAddr::V6(_)) => RecordType::AAAA,
            Value::Srv(..) => RecordType::SRV,
        }
    }
}

/// A value and how many contributors gave it. The count sits in the
/// variant's padding: 24 bytes, where a `(Value, u32)` pair takes 32
/// (~4.5 MB of 560,000 records at 10,000 apps x 5 tasks).
#[derive(Clone, Debug)]
enum Counted {
    Addr(IpAddr, u32),
    Srv(u16, u32, Target),
}

const _: () = assert!(size_of::<Counted>() == 24);

impl Counted {
    fn first(value: &Value) -> Self {
        match value {
            Value::Addr(ip) => Counted::Addr(*ip, 1),
            Value::Srv(port, target) => Counted::Srv(*port, 1, target.clone()),
        }
    }

    fn value(&self) -> Value {
        match self {
            Counted::Addr(ip, _) => Value::Addr(*ip),
            Counted::Srv(port, _, target) => Value::Srv(*port, target.clone()),
        }
    }

    fn count(&mut self) -> &mut u32 {
        match self {
            Counted::Addr(_, n) | Counted::Srv(_, n, _) => n,
        }
    }

    /// In [`Value`]'s order, without making one.
    fn cmp_value(&self, value: &Value) -> Ordering {
        match (self, value) {
            (Counted::Addr(a, _), Value::Addr(b)) => a.cmp(b),
            (Counted::Addr(..), Value::Srv(..)) => Ordering::Less,
            (Counted::Srv(..), Value::Addr(_)) => Ordering::Greater,
            (Counted::Srv(p, _, t), Value::Srv(q, u)) => (p, t).cmp(&(q, u)),
        }
    }
}

/// One name of a zone: its values (sorted) with how many contributors gave
/// each, and how many names with records lie strictly below it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ZoneNode {
    /// Sized exactly: most names hold one value or five (an app's tasks).
    data: Box<[Counted]>,
    below: u32,
}

impl ZoneNode {
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Neither records nor names below: the name no longer exists.
    pub(crate) fn is_unused(&self) -> bool {
        self.data.is_empty() && self.below == 0
    }

    /// One more (`up`) or one fewer name with records below this one.
    pub(crate) fn count_below(&mut self, up: bool) {
        self.below = match up {
            true => self.below + 1,
            false => self.below.saturating_sub(1),
        };
    }

    /// Counts `value` in (`up`) or out; returns the change in records.
    pub(crate) fn count(&mut self, value: &Value, up: bool) -> isize {
        let found = self.data.binary_search_by(|c| c.cmp_value(value));
        match (found, up) {
            (Ok(i), true) => *self.data[i].count() += 1,
            (Err(i), true) => {
                self.edit(|v| v.insert(i, Counted::first(value)));
                return 1;
            }
            (Ok(i), false) => {
                let n = self.data[i].count();
                *n -= 1;
                if *n == 0 {
                    self.edit(|v| drop(v.remove(i)));
                    return -1;
                }
            }
            (Err(_), false) => {}
        }
        0
    }
}

impl ZoneNode {
    /// Changes the values through a `Vec` sized exactly, with no spare
    /// capacity kept (a name's values rarely change once built).
    fn edit(&mut self, f: impl FnOnce(&mut Vec<Counted>)) {
        let mut v = std::mem::take(&mut self.data).into_vec();
        v.reserve_exact(1);
        f(&mut v);
        self.data = v.into_boxed_slice();
    }
}

/// The records of one name, made when read: its values, then at a zone's
/// apex the SOA and NS.
#[derive(Clone, Copy, Debug)]
pub struct Records<'a> {
    /// The name's lower-cased wire labels (see `wire_name`).
    owner: &'a [u8],
    ttl: u32,
    data: &'a [Counted],
    apex: &'a [Record],
}

impl<'a> Records<'a> {
    pub(crate) fn new(
        owner: &'a [u8],
        ttl: u32,
        node: Option<&'a ZoneNode>,
        apex: &'a [Record],
    ) -> Self {
        let data = node.map_or(&[][..], |n| &n.data[..]);
        Records {
            owner,
            ttl,
            data,
            apex,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len() + self.apex.len()
    }

    /// True for an empty non-terminal (a name that exists without records).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name's lower-cased wire labels.
    pub(crate) fn owner_wire(&self) -> &'a [u8] {
        self.owner
    }

    /// The name the records are stored at (lower case, absolute).
    pub fn owner(&self) -> Name {
        decode(self.owner)
    }

    /// The records, under the name they are stored at.
    pub fn iter(&self) -> impl Iterator<Item = Record> + use<'a> {
        self.of_type(RecordType::ANY, &self.owner())
    }

    /// The records of type `rtype` (every record for ANY), owned by `owner`
    /// (an answer writes the name as it was asked).
    pub fn of_type(
        &self,
        rtype: RecordType,
        owner: &Name,
    ) -> impl Iterator<Item = Record> + use<'a> {
        let wanted = move |t: RecordType| rtype == RecordType::ANY || t == rtype;
        let (ttl, name) = (self.ttl, owner.clone());
        let data = self
            .data
            .iter()
            .map(Counted::value)
            .filter(move |v| wanted(v.record_type()));
        let data = data.map(move |v| (v.rdata(), ttl));
        let apex = self.apex.iter().filter(move |r| wanted(r.record_type()));
        let apex = apex.map(|r| (r.data().clone(), r.ttl()));
        data.chain(apex)
            .map(move |(rdata, ttl)| Record::from_rdata(name.clone(), ttl, rdata))
    }
}
