//! The loop both plans run: the services of a list of VIPs, in VIP order,
//! compared with what the maps hold; then the backends no service names.
//! `next` starts as a copy of what the maps hold (O(1): persistent maps)
//! and only the VIPs of the list are written into it.
use std::collections::BTreeSet;

use l4lb_common::MemberKey;

use super::{
    Applied, AppliedService, Index, Op, Plan,
    place::{NewBackends, place, unchanged},
};
use crate::{
    codec,
    model::{ServiceSpec, Vip},
};

/// A VIP to plan: its desired service (None: to remove) and what the maps
/// hold for it.
pub(super) type Item<'a, 'd> = (Vip, Option<&'d ServiceSpec>, Option<&'a AppliedService>);

pub(super) struct Run<'a> {
    applied: &'a Applied,
    index: &'a mut Index,
    p: Plan,
    new: NewBackends,
    /// Backend ids a replaced or removed table named: deleted if nothing
    /// names them at the end.
    left: BTreeSet<u32>,
    /// Where the services' writes go as they are planned (None: `p.now`).
    emit: Option<Emit<'a>>,
}

/// A plan's services handed on a part at a time: every `every` services
/// placed, their new backends and their ops go to `to` (false: it did not
/// take them, and planning stops), so the plan never holds them all.
pub(super) struct Emit<'a> {
    pub every: usize,
    pub to: &'a mut dyn FnMut(&[Op]) -> bool,
    /// Ops handed on.
    pub emitted: usize,
    pub refused: bool,
    /// The part being gathered (its buffer reused from part to part).
    buf: Vec<Op>,
}

impl<'a> Emit<'a> {
    pub(super) fn new(every: usize, to: &'a mut dyn FnMut(&[Op]) -> bool) -> Emit<'a> {
        Emit {
            every: every.max(1),
            to,
            emitted: 0,
            refused: false,
            buf: Vec::new(),
        }
    }

    /// Hands on the new backends, then the services' ops (new backends
    /// exist before any slot names them).
    fn part(&mut self, new: &mut NewBackends, service_ops: &mut Vec<Op>) {
        self.buf.append(&mut new.resets);
        self.buf.append(&mut new.puts);
        self.buf.append(service_ops);
        if !self.buf.is_empty() {
            self.refused = !(self.to)(&self.buf);
            self.emitted += self.buf.len();
            self.buf.clear();
        }
    }
}

impl<'a> Run<'a> {
    pub(super) fn new(applied: &'a Applied, index: &'a mut Index) -> Run<'a> {
        let next = Applied {
            services: applied.services.clone(),
            backends: applied.backends.clone(),
            orphan_members: BTreeSet::new(),
        };
        Run {
            applied,
            index,
            p: Plan {
                next,
                ..Plan::default()
            },
            new: NewBackends::default(),
            left: BTreeSet::new(),
            emit: None,
        }
    }

    /// Hands the services' writes to `emit` as they are planned.
    pub(super) fn emitting(mut self, emit: Emit<'a>) -> Run<'a> {
        self.emit = Some(emit);
        self
    }

    /// The emitter, once planning is done.
    pub(super) fn take_emit(&mut self) -> Option<Emit<'a>> {
        self.emit.take()
    }

    /// Plans each VIP of `items` (sorted, with its desired service and
    /// what the maps hold for it): those with a desired service are added,
    /// changed or left as they are, the others removed from the maps.
    /// `desired_len`: how many services the desired state has (those not
    /// in `items` are unchanged).
    pub(super) fn services<'d>(
        &mut self,
        items: impl Iterator<Item = Item<'a, 'd>>,
        desired_len: usize,
    ) {
        let mut service_ops = Vec::new();
        let mut removed = Vec::new();
        let (mut seen, mut placed) = (0, 0);
        for (vip, spec, old) in items {
            let Some(spec) = spec else {
                removed.extend(old.map(|old| (vip, old)));
                continue;
            };
            seen += 1;
            let before = service_ops.len();
            self.service(&vip, spec, old, &mut service_ops);
            placed += usize::from(service_ops.len() > before);
            if let Some(e) = self.emit.as_mut().filter(|e| placed >= e.every) {
                e.part(&mut self.new, &mut service_ops);
                placed = 0;
                if e.refused {
                    return;
                }
            }
        }
        self.p.summary.unchanged += desired_len - seen;
        match self.emit.as_mut() {
            Some(e) => {
                e.part(&mut self.new, &mut service_ops);
                if e.refused {
                    return;
                }
            }
            None => {
                // New backends exist before any slot names them.
                self.p.now.append(&mut self.new.resets);
                self.p.now.append(&mut self.new.puts);
                self.p.now.extend(service_ops);
            }
        }
        for (vip, old) in removed {
            self.remove(&vip, old);
        }
    }

    fn service(
        &mut self,
        vip: &Vip,
        spec: &ServiceSpec,
        old: Option<&AppliedService>,
        service_ops: &mut Vec<Op>,
    ) {
        if unchanged(self.index, spec, old) {
            self.p.summary.unchanged += 1;
            return;
        }
        match place(vip, spec, old, self.index, &mut self.new, service_ops) {
            Ok(svc) => {
                self.index.name(svc.members.keys().copied());
                match old {
                    Some(old) => {
                        self.p.summary.changed += 1;
                        for b in old.members.keys().filter(|b| !svc.members.contains_key(b)) {
                            self.p.after_grace.push(del_member(svc.id, *b));
                        }
                        self.leave(old);
                    }
                    None => self.p.summary.added += 1,
                }
                self.p.next.services.insert(*vip, svc);
            }
            // A changed service that does not fit keeps its current table
            // (`next` holds it already).
            Err(e) => self.p.skipped.push((*vip, e)),
        }
    }

    fn remove(&mut self, vip: &Vip, old: &AppliedService) {
        self.p.summary.removed += 1;
        self.p.now.push(Op::DelService(codec::service_key(vip)));
        for b in old.members.keys() {
            self.p.after_grace.push(del_member(old.id, *b));
        }
        self.p.next.services.remove(vip);
        self.leave(old);
        self.index.free_service_id(old.id);
    }

    /// `old`'s table is replaced: its range and members go after the grace period.
    fn leave(&mut self, old: &AppliedService) {
        self.index.unname(old.members.keys().copied());
        self.left.extend(old.members.keys());
        self.index.free_range(old.slot_base, old.slot_count);
    }

    /// The end of a full plan: orphan members go, and every backend the
    /// maps hold that no service names.
    pub(super) fn all_backends(mut self) -> Plan {
        for (service_id, backend_id) in &self.applied.orphan_members {
            self.p
                .after_grace
                .push(del_member(*service_id, *backend_id));
        }
        let all: Vec<u32> = self.applied.backends.keys().copied().collect();
        self.unnamed_backends(all)
    }

    /// The end of a plan of a change: the backends its tables left, if no
    /// service names them any more (every other backend is named: the
    /// full plan before deleted the rest).
    pub(super) fn touched_backends(mut self) -> Plan {
        let left = std::mem::take(&mut self.left);
        self.unnamed_backends(left)
    }

    /// Backends: exactly those the next table's members name.
    fn unnamed_backends(mut self, candidates: impl IntoIterator<Item = u32>) -> Plan {
        for id in candidates {
            let Some(addr) = self.applied.backends.get(&id) else {
                continue;
            };
            if !self.index.named(id) {
                self.p.after_grace.push(Op::DelBackend(id));
                self.p.next.backends.remove(&id);
                self.index.free_backend(id, *addr);
            }
        }
        for (id, addr) in std::mem::take(&mut self.new.added) {
            self.p.next.backends.insert(id, addr);
        }
        self.p
    }
}

fn del_member(service_id: u32, backend_id: u32) -> Op {
    Op::DelMember(MemberKey {
        service_id,
        backend_id,
    })
}
