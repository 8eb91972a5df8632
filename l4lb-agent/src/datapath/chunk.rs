//! A run of services' ops regrouped by kind, so that each kind is written in
//! few calls: a plan writes each new or changed service as (reset its
//! counters, write its slots, put its members, put the service), 10,000
//! times in a full sync; one bpf() call or one mmap for each was most of
//! the apply. Each service's value comes after its own slots and members
//! (written ahead, `ahead.rs`) and its counters' reset, so a failure midway
//! leaves, for up to the chunks of one write, what a failure inside one
//! service left before: tables no value names yet, and members written
//! ahead of their service's value. The reconciler then re-reads the maps;
//! `adopt.rs` marks such a service stale (or its members orphans) and the
//! next full plan rewrites it. Every service value written names a
//! complete table.
use aya::maps::MapError;

use crate::plan::Op;

/// Services per chunk: bounds the batch buffers held at once (a chunk's
/// tables are written as they are filled, none held).
pub const SERVICES: usize = 256;

/// The ops of one chunk, by kind, each with its index in the plan.
#[derive(Default)]
pub struct Chunk<'a> {
    pub resets: Vec<(usize, &'a Op)>,
    pub slots: Vec<(usize, &'a Op)>,
    pub members: Vec<(usize, &'a Op)>,
    pub services: Vec<(usize, &'a Op)>,
}

/// The keys and values of the `PutMember`s among `ops`, for one batch.
pub fn member_batch<'a>(
    ops: impl Iterator<Item = &'a Op>,
) -> (Vec<l4lb_common::MemberKey>, Vec<l4lb_common::MemberValue>) {
    ops.filter_map(|op| match op {
        Op::PutMember(k, w) => Some((
            *k,
            l4lb_common::MemberValue {
                weight: *w,
                _pad: 0,
            },
        )),
        _ => None,
    })
    .unzip()
}

impl Chunk<'_> {
    /// The plan index of the chunk's first op (0 for an empty chunk).
    pub fn first_index(&self) -> usize {
        [&self.resets, &self.slots, &self.members, &self.services]
            .iter()
            .filter_map(|ops| ops.first().map(|(k, _)| *k))
            .min()
            .unwrap_or(0)
    }
}

/// How many ops at the start of `ops` form whole services' groups (each
/// ended by its PutService), at most `limit` services; 0 if fewer than two.
pub fn len(ops: &[Op], limit: usize) -> usize {
    let (mut services, mut end) = (0, 0);
    for (k, op) in ops.iter().enumerate() {
        match op {
            Op::ResetServiceStats(_) | Op::WriteSlots { .. } | Op::PutMember(..) => {}
            Op::PutService(..) => {
                services += 1;
                end = k + 1;
                if services == limit {
                    break;
                }
            }
            _ => break,
        }
    }
    if services < 2 { 0 } else { end }
}

/// Where `Maps::apply` finds chunks in `ops`: (start, length) of each. A
/// position not starting one starts none after it within the same ops
/// (a suffix holds no more services), so stepping by one finds the same.
pub fn ranges(ops: &[Op]) -> Vec<(usize, usize)> {
    let (mut found, mut i) = (Vec::new(), 0);
    while i < ops.len() {
        match len(&ops[i..], SERVICES) {
            0 => i += 1,
            n => {
                found.push((i, n));
                i += n;
            }
        }
    }
    found
}

/// `ops` (a run [`len`] measured), starting at plan index `first`, by kind.
pub fn split(ops: &[Op], first: usize) -> Chunk<'_> {
    let mut c = Chunk::default();
    for (k, op) in ops.iter().enumerate() {
        let to = match op {
            Op::ResetServiceStats(_) => &mut c.resets,
            Op::WriteSlots { .. } => &mut c.slots,
            Op::PutMember(..) => &mut c.members,
            _ => &mut c.services,
        };
        to.push((first + k, op));
    }
    c
}

impl super::Maps {
    /// Writes what is left of a chunk once its tables and members are in
    /// (`ahead.rs`, `members`: unless left to this thread): the counters,
    /// then one batch of service values. Errs with the plan index of the op
    /// that failed.
    pub(super) fn apply_chunk(
        &mut self,
        c: &Chunk<'_>,
        members: super::ahead::Members,
    ) -> Result<(), (usize, MapError)> {
        if members == super::ahead::Members::Left {
            for (i, op) in &c.members {
                self.apply_one(op).map_err(|e| (*i, e))?;
            }
        }
        for (i, op) in &c.resets {
            self.apply_one(op).map_err(|e| (*i, e))?;
        }
        self.put_many(&c.services)
    }

    /// Puts of one kind (members or services) in one batch, one
    /// by one if this kernel has no batch for the map. Errs with the plan
    /// index of the op that failed.
    pub(super) fn put_many(&mut self, ops: &[(usize, &Op)]) -> Result<(), (usize, MapError)> {
        if ops.is_empty() {
            return Ok(());
        }
        let all: Vec<&Op> = ops.iter().map(|(_, op)| *op).collect();
        if self.batches {
            self.before_puts(&all).map_err(|e| (ops[0].0, e))?;
            match self.put_batch(&all) {
                Ok(()) => return self.after_puts(&all).map_err(|e| (ops[0].0, e)),
                Err((0, e)) if super::no_batch(&e) => {
                    tracing::debug!("batch map updates unavailable ({e}), writing one by one");
                    self.batches = false;
                }
                Err((done, e)) => {
                    let done = done.min(ops.len() - 1);
                    self.after_puts(&all[..done])
                        .map_err(|e| (ops[done].0, e))?;
                    return Err((ops[done].0, batch_error(e)));
                }
            }
        }
        for (i, op) in ops {
            self.apply_one(op).map_err(|e| (*i, e))?;
        }
        Ok(())
    }
}

pub(super) fn batch_error(e: std::io::Error) -> MapError {
    MapError::SyscallError(aya::sys::SyscallError {
        call: "bpf_map_update_batch",
        io_error: e,
    })
}

#[cfg(test)]
mod tests {
    use l4lb_common::{MemberKey, ServiceKey, ServiceValue};

    use super::*;
    use crate::plan::SlotTable;

    fn service(id: u32) -> Vec<Op> {
        let key = ServiceKey {
            addr: [0, 0, 0, id],
            ..ServiceKey::default()
        };
        vec![
            Op::ResetServiceStats(id),
            Op::WriteSlots {
                base: id * 10,
                table: SlotTable::new(7, vec![(1, "10.0.0.1:80".parse().unwrap(), 1)]),
            },
            Op::PutMember(
                MemberKey {
                    service_id: id,
                    backend_id: 1,
                },
                1,
            ),
            Op::PutService(key, ServiceValue::default()),
        ]
    }

    #[test]
    fn a_chunk_ends_with_a_service_and_at_the_limit() {
        let mut ops: Vec<Op> = (0..5).flat_map(service).collect();
        assert_eq!(len(&ops, 3), 12);
        assert_eq!(len(&ops, 100), 20);
        // A trailing partial group and other ops are left out.
        ops.push(Op::ResetServiceStats(9));
        ops.push(Op::DelBackend(3));
        assert_eq!(len(&ops, 100), 20);
        assert_eq!(len(&ops[16..], 100), 0, "one service is not regrouped");
    }

    #[test]
    fn split_keeps_each_kind_in_plan_order_with_its_index() {
        let ops: Vec<Op> = (0..3).flat_map(service).collect();
        let c = split(&ops, 100);
        let idx = |v: &[(usize, &Op)]| v.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        assert_eq!(idx(&c.resets), [100, 104, 108]);
        assert_eq!(idx(&c.slots), [101, 105, 109]);
        assert_eq!(idx(&c.members), [102, 106, 110]);
        assert_eq!(idx(&c.services), [103, 107, 111]);
    }
}
