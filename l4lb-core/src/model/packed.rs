//! [`PackedRecords`]: one part's task records in two allocations, for an
//! agent whose only reader of records is the discovery HTTP API (`/v1`,
//! which unpacks them per request). The strings an app's tasks share (app
//! id, framework, agent ids, zones, port names) are a table of the interned
//! copies the records held, each once (an agent's id is then held once for
//! every app on it); then each task's own fields in postcard's wire form
//! (varints, no field names; written by hand, read by postcard), its id as
//! the length it shares with the one before and the rest (an app's task
//! ids share their `<app>.instance-` prefix). At the bench's shape a task
//! takes 68 B instead of ~316 B as an `Arc`'d record with its task id,
//! addresses and ports allocated apart.
use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    fmt,
    net::IpAddr,
    sync::Arc,
};

use serde::Deserialize;

use super::{Catalog, Protocols, TaskPort, TaskRecord};

/// One part's records, packed; unpacked in the order they were packed.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedRecords {
    /// The shared strings the tasks name by index.
    strings: Box<[Arc<str>]>,
    /// The tasks.
    bytes: Box<[u8]>,
}

impl fmt::Debug for PackedRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, len) = (self.strings.len(), self.bytes.len());
        write!(f, "PackedRecords({n} strings, {len} bytes)")
    }
}

/// Packed records that do not unpack (we wrote them, so this means a bug,
/// never input: the reader skips the part and says so).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("packed task records unreadable: {0}")]
    Decode(#[from] postcard::Error),
    #[error("packed task record names string {0} of a table of {1}")]
    Index(u32, usize),
    #[error("packed task port has protocols {0}, not a list")]
    Protocols(u8),
    #[error("packed task id shares {0} bytes of one of {1}")]
    Prefix(u32, usize),
}

/// A record's booleans in one byte.
const RUNNING: u8 = 1;
const HOST_PORTS: u8 = 2;
const IN_POD: u8 = 4;
const HEALTH_CHECKED: u8 = 8;
const HEALTHY: u8 = 16;

impl PackedRecords {
    /// `records`, packed (None when there are none: no allocation).
    pub fn pack(records: &[Arc<TaskRecord>]) -> Option<PackedRecords> {
        if records.is_empty() {
            return None;
        }
        let table = Table::of(records);
        let bytes = encoded(records, &table);
        let strings = table.strings.iter().map(|s| Arc::clone(s)).collect();
        Some(PackedRecords { strings, bytes })
    }

    /// The records, appended to `out` in the order packed; on an error
    /// `out` is left as it was.
    pub fn unpack_into(&self, out: &mut Vec<Arc<TaskRecord>>) -> Result<(), UnpackError> {
        let tasks: Vec<TaskIn> = postcard::from_bytes(&self.bytes)?;
        let start = out.len();
        out.reserve(tasks.len());
        let mut last = "";
        for t in tasks {
            match t.record(&self.strings, last) {
                Ok(r) => out.push(Arc::new(r)),
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
            last = &out[out.len() - 1].task_id;
        }
        Ok(())
    }

    /// Bytes held by the tasks (without the allocations' own overhead).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Shared strings the tasks name.
    pub fn strings(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl Catalog {
    /// This catalog with its packed records ([`Catalog::packed`]) made into
    /// `tasks`, in catalog order: by (app id, task id), ties in part order
    /// then record order, as a full build lists them. Also the number of
    /// parts left out because their records did not unpack.
    pub fn unpacked(&self) -> (Catalog, usize) {
        let mut tasks = self.tasks.clone();
        let mut skipped = 0;
        for part in &self.packed {
            if part.unpack_into(&mut tasks).is_err() {
                skipped += 1;
            }
        }
        // Stable: the parts come in the catalog's part order.
        tasks.sort_by(|a, b| (&a.app_id, &a.task_id).cmp(&(&b.app_id, &b.task_id)));
        let catalog = Catalog {
            services: self.services.clone(),
            tasks,
            cluster: self.cluster.clone(),
            ..Default::default()
        };
        (catalog, skipped)
    }
}

/// `records` encoded, in an allocation of their size (written into a
/// buffer this thread keeps).
fn encoded(records: &[Arc<TaskRecord>], table: &Table) -> Box<[u8]> {
    /// A buffer grown past this (an app of thousands of tasks) is not kept.
    const KEPT: usize = 64 << 10;
    thread_local! {
        static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        let mut w = Writer(std::mem::take(&mut *buf.borrow_mut()));
        w.0.clear();
        w.tasks(records, table);
        let bytes = Box::from(&w.0[..]);
        if w.0.capacity() <= KEPT {
            *buf.borrow_mut() = w.0;
        }
        bytes
    })
}

/// The shared strings of a part's records, each once, by first use.
struct Table<'a> {
    strings: Vec<&'a Arc<str>>,
    /// Past a few strings (an app on many agents), an index of them.
    index: Option<HashMap<&'a str, u32, foldhash::fast::RandomState>>,
    /// Each string's index in the order [`Table::of`] met them, which is
    /// the order the writer asks for them (no second search).
    refs: Vec<u32>,
    next: Cell<usize>,
}

/// Strings searched in place before an index is made.
const LINEAR: usize = 16;

impl<'a> Table<'a> {
    fn of(records: &'a [Arc<TaskRecord>]) -> Table<'a> {
        let mut t = Table {
            strings: Vec::with_capacity(records.len() + 3),
            index: None,
            refs: Vec::with_capacity(records.len() * 4),
            next: Cell::new(0),
        };
        for r in records {
            t.add(&r.app_id);
            t.add(&r.framework);
            t.add(&r.agent_id);
            if let Some(z) = &r.zone {
                t.add(z);
            }
            for p in &r.ports {
                if let Some(n) = &p.name {
                    t.add(n);
                }
            }
        }
        t
    }

    fn add(&mut self, s: &'a Arc<str>) {
        let found = match &self.index {
            Some(index) => index.get(&**s).copied(),
            None => self.by_ptr(s),
        };
        if let Some(at) = found {
            self.refs.push(at);
            return;
        }
        let at = self.strings.len() as u32;
        self.refs.push(at);
        self.strings.push(s);
        if let Some(index) = &mut self.index {
            index.insert(s, at);
        } else if self.strings.len() > LINEAR {
            let all = self.strings.iter().enumerate().rev(); // the first of equals wins
            self.index = Some(all.map(|(i, s)| (&***s, i as u32)).collect());
        }
    }

    /// The shared strings are interned, so a string is found by its
    /// address: comparing values made most of the packing (agent ids of one
    /// length and prefix). An equal string elsewhere is a second entry; the
    /// same records still pack to the same bytes.
    fn by_ptr(&self, s: &str) -> Option<u32> {
        let at = self.strings.iter().position(|t| std::ptr::eq(&***t, s));
        at.map(|i| i as u32)
    }

    fn find(&self, s: &str) -> Option<u32> {
        if let Some(index) = &self.index {
            return index.get(s).copied();
        }
        let by_value = || self.strings.iter().position(|t| ***t == *s);
        self.by_ptr(s).or_else(|| by_value().map(|i| i as u32))
    }

    /// The index of a string [`Table::of`] added: the next one it met,
    /// checked (a search if the writer asks in another order).
    fn at(&self, s: &str) -> u32 {
        let k = self.next.get();
        self.next.set(k + 1);
        match self.refs.get(k) {
            Some(&i) if std::ptr::eq(&**self.strings[i as usize], s) => i,
            _ => self.find(s).expect("every shared string is in the table"),
        }
    }
}

/// Writes what postcard reads as a `Vec<TaskIn>`, by hand: through serde
/// the same bytes took ~600 instructions a task, 3.5 % of a full read
/// (its wire form: LEB128 varints for integers and lengths, a byte for an
/// `Option`'s tag and for a `u8`, an enum's variant as a varint, arrays of
/// bytes raw). The tests unpack what it writes.
struct Writer(Vec<u8>);

impl Writer {
    fn tasks(&mut self, records: &[Arc<TaskRecord>], t: &Table) {
        self.varint(records.len() as u64);
        let mut last = "";
        for r in records {
            self.varint(t.at(&r.app_id).into());
            let (n, rest) = shared_prefix(last, &r.task_id);
            self.varint(n.into());
            self.str(rest);
            self.varint(t.at(&r.framework).into());
            self.varint(t.at(&r.agent_id).into());
            self.option(r.agent_ip.as_ref(), Writer::ip);
            self.varint(r.task_ips.len() as u64);
            r.task_ips.iter().for_each(|ip| self.ip(ip));
            self.varint(r.ports.len() as u64);
            for p in &r.ports {
                self.varint(p.port.into());
                self.0.push(p.protocols.bits());
                let name = p.name.as_deref().map(|n| t.at(n));
                self.option(name.as_ref(), |w, &i| w.varint(i.into()));
            }
            self.0.push(flags(r));
            let zone = r.zone.as_deref().map(|z| t.at(z));
            self.option(zone.as_ref(), |w, &i| w.varint(i.into()));
            last = &r.task_id;
        }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn str(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn option<T>(&mut self, v: Option<&T>, write: impl FnOnce(&mut Writer, &T)) {
        match v {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                write(self, v);
            }
        }
    }

    fn ip(&mut self, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.0.push(0);
                self.0.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.0.push(1);
                self.0.extend_from_slice(&a.octets());
            }
        }
    }
}

/// A record as read: the same fields in the same order.
#[derive(Deserialize)]
struct TaskIn<'a> {
    app: u32,
    #[serde(borrow)]
    task_id: (u32, &'a str),
    framework: u32,
    agent: u32,
    agent_ip: Option<IpAddr>,
    task_ips: Vec<IpAddr>,
    /// (port, protocols, name)
    ports: Vec<(u16, u8, Option<u32>)>,
    flags: u8,
    zone: Option<u32>,
}

/// `id` as the bytes it shares with `last` (whole characters) and the rest.
fn shared_prefix<'a>(last: &str, id: &'a str) -> (u32, &'a str) {
    let mut n = last
        .bytes()
        .zip(id.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    while !id.is_char_boundary(n) {
        n -= 1;
    }
    (n as u32, &id[n..])
}

fn flags(r: &TaskRecord) -> u8 {
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    bit(r.running, RUNNING)
        | bit(r.host_ports, HOST_PORTS)
        | bit(r.in_pod, IN_POD)
        | bit(r.healthy.is_some(), HEALTH_CHECKED)
        | bit(r.healthy == Some(true), HEALTHY)
}

impl TaskIn<'_> {
    /// The record, its task id completed from `last`'s.
    fn record(self, shared: &[Arc<str>], last: &str) -> Result<TaskRecord, UnpackError> {
        let (n, rest) = self.task_id;
        let prefix = last.get(..n as usize);
        let prefix = prefix.ok_or(UnpackError::Prefix(n, last.len()))?;
        let s = |i: u32| {
            let got = shared.get(i as usize).cloned();
            got.ok_or(UnpackError::Index(i, shared.len()))
        };
        let ports = self.ports.into_iter().map(|(port, bits, name)| {
            Ok(TaskPort {
                port,
                protocols: Protocols::from_bits(bits).ok_or(UnpackError::Protocols(bits))?,
                name: name.map(s).transpose()?,
            })
        });
        let f = self.flags;
        Ok(TaskRecord {
            app_id: s(self.app)?,
            task_id: [prefix, rest].concat().into_boxed_str(),
            framework: s(self.framework)?,
            agent_id: s(self.agent)?,
            agent_ip: self.agent_ip,
            task_ips: self.task_ips.into_boxed_slice(),
            ports: ports.collect::<Result<_, UnpackError>>()?,
            host_ports: f & HOST_PORTS != 0,
            running: f & RUNNING != 0,
            healthy: (f & HEALTH_CHECKED != 0).then_some(f & HEALTHY != 0),
            in_pod: f & IN_POD != 0,
            zone: self.zone.map(s).transpose()?,
        })
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
