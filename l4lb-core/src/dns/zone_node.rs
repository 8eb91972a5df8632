//! One name of a zone as the zones keep it: its data values, not records.
//!
//! A hickory [`Record`] carries its own owner name and a data enum sized for
//! every record type: ~490 bytes each at 10,000 tasks, where the value is an
//! address or a port and a target. The owner is the map key already, and an
//! answer rewrites it as the client asked (0x20 case), so records are made
//! when read ([`Records`]), from the values and the zone's TTL.
use std::net::IpAddr;

use hickory_proto::rr::{
    LowerName, Name, RData, Record, RecordType,
    rdata::{A, AAAA, SRV},
};

/// One record's data. Ordered as a zone serves a name's records: addresses
/// by address, then SRVs by port and target.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Value {
    Addr(IpAddr),
    /// Port and target (priority 0, weight 1, as Mesos-DNS). Boxed: a name
    /// is ~80 bytes inline and most values are addresses.
    Srv(u16, Box<Name>),
}

impl Value {
    pub(crate) fn srv(port: u16, target: Name) -> Value {
        Value::Srv(port, Box::new(target))
    }

    pub(crate) fn rdata(&self) -> RData {
        match self {
            Value::Addr(IpAddr::V4(a)) => RData::A(A(*a)),
            Value::Addr(IpAddr::V6(a)) => RData::AAAA(AAAA(*a)),
            Value::Srv(port, target) => RData::SRV(SRV::new(0, 1, *port, Name::clone(target))),
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

/// One name of a zone: its values (sorted) with how many contributors gave
/// each, and how many names with records lie strictly below it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ZoneNode {
    data: Vec<(Value, u32)>,
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
        let found = self.data.binary_search_by(|(v, _)| v.cmp(value));
        match (found, up) {
            (Ok(i), true) => self.data[i].1 += 1,
            (Err(i), true) => {
                insert_exact(&mut self.data, i, (value.clone(), 1));
                return 1;
            }
            (Ok(i), false) => {
                self.data[i].1 -= 1;
                if self.data[i].1 == 0 {
                    self.data.remove(i);
                    return -1;
                }
            }
            (Err(_), false) => {}
        }
        0
    }
}

/// `Vec::insert` without the doubling for small vectors: most names hold a
/// value or two.
fn insert_exact<T>(v: &mut Vec<T>, i: usize, x: T) {
    if v.len() == v.capacity() && v.len() < 16 {
        v.reserve_exact(1);
    }
    v.insert(i, x);
}

/// The records of one name, made when read: its values, then at a zone's
/// apex the SOA and NS.
#[derive(Clone, Copy, Debug)]
pub struct Records<'a> {
    owner: &'a LowerName,
    ttl: u32,
    data: &'a [(Value, u32)],
    apex: &'a [Record],
}

impl<'a> Records<'a> {
    pub(crate) fn new(
        owner: &'a LowerName,
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

    /// The records, under the name they are stored at.
    pub fn iter(&self) -> impl Iterator<Item = Record> + use<'a> {
        self.of_type(RecordType::ANY, &Name::from(self.owner.clone()))
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
            .filter(move |(v, _)| wanted(v.record_type()));
        let data = data.map(move |(v, _)| (v.rdata(), ttl));
        let apex = self.apex.iter().filter(move |r| wanted(r.record_type()));
        let apex = apex.map(|r| (r.data().clone(), r.ttl()));
        data.chain(apex)
            .map(move |(rdata, ttl)| Record::from_rdata(name.clone(), ttl, rdata))
    }
}
