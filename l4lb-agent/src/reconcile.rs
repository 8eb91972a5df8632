//! Drives the maps toward a desired state: plan → write → grace → cleanup.
//! Keeps the last applied state in memory; after any write failure it re-reads
//! the maps, which are the truth, so the next attempt starts from reality.
//!
//! Between two catalogs it also keeps the desired services the maps were
//! last planned from and the plan's allocation index: the next plan then
//! compares only the services the two catalogs' persistent maps differ in
//! (`plan_change`). It plans everything instead when it has no such state:
//! at start (adoption), after a failed write (re-read), after a plan that
//! skipped a service for capacity (or left one stale), and after a stage
//! whose table was never finished.
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{
    adopt::{self, Problem},
    model::{DesiredState, ServiceMap},
    plan::{Applied, Index, Op, Summary, changed_vips, plan_all_emitting, plan_change},
};

/// What the reconciler needs from the datapath (a fake in tests).
pub trait MapWriter {
    fn write(&mut self, ops: &[Op]) -> Result<()>;
    /// What the maps hold, inconsistent services marked stale (`adopt.rs`),
    /// and what was inconsistent.
    fn read_back(&self) -> Result<(Applied, Vec<Problem>)>;
    /// Sizes of the maps the plans allocate from.
    fn capacity(&self) -> crate::plan::Capacity;
}

impl MapWriter for crate::datapath::Maps {
    fn write(&mut self, ops: &[Op]) -> Result<()> {
        Ok(self.apply(ops)?)
    }
    fn read_back(&self) -> Result<(Applied, Vec<Problem>)> {
        self.read_checked()
    }
    fn capacity(&self) -> crate::plan::Capacity {
        crate::datapath::Maps::capacity(self)
    }
}

/// Services a full plan writes at a time: four of the datapath's chunks of 256
/// (`datapath/chunk.rs`), so that the Maglev fill of one still runs beside
/// the writes of the one before.
pub const SERVICES_PER_WRITE: usize = 1024;

/// How long a BPF program that read the previous generation may still be
/// running. Programs run in microseconds; this is generous on purpose.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(20);

pub struct Reconciler<W> {
    pub writer: W,
    applied: Applied,
    /// What a plan of a change starts from; None: the next plan is full.
    known: Option<Known>,
    grace: Duration,
    /// Inconsistencies found in the maps since the start (each rewritten).
    pub repairs: usize,
}

#[derive(Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub writes: usize,
    /// Plan, writes, grace and cleanup (not what ran between the stage and
    /// its finish).
    pub took: Duration,
    /// When the new table was in the maps (before the grace period and the
    /// cleanup of entries it no longer uses): from here new connections follow it.
    pub serving_at: Instant,
    /// Services left out because a map is full.
    pub skipped: Vec<(crate::model::Vip, crate::plan::PlanError)>,
    /// Every service was compared (else only those that changed).
    pub full: bool,
}

/// The desired services `applied` was planned from, and its index.
struct Known {
    desired: ServiceMap,
    index: Index,
}

impl<W: MapWriter> Reconciler<W> {
    /// Adopts what the maps already hold (a previous run's table); services
    /// whose table does not match their members are rewritten by the next plan.
    pub fn adopt(writer: W, grace: Duration) -> Result<Self> {
        let mut r = Reconciler {
            writer,
            applied: Applied::default(),
            known: None,
            grace,
            repairs: 0,
        };
        r.reread()?;
        Ok(r)
    }

    /// Re-reads the maps (the truth), after a start or a failed write.
    fn reread(&mut self) -> Result<()> {
        let start = Instant::now();
        let (applied, problems) = self.writer.read_back()?;
        tracing::debug!(
            services = applied.services.len(),
            problems = problems.len(),
            took_us = start.elapsed().as_micros() as u64,
            "maps read back and checked"
        );
        adopt::warn_all(&problems);
        self.repairs += problems.len();
        self.applied = applied;
        self.known = None;
        Ok(())
    }

    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    pub async fn reconcile(&mut self, desired: &DesiredState) -> Result<Outcome> {
        let staged = self.stage(desired)?;
        self.finish(staged).await
    }

    /// Plans and writes what the new table needs: from its return, new
    /// connections follow it. What it no longer uses is left for [`finish`].
    ///
    /// [`finish`]: Reconciler::finish
    pub fn stage(&mut self, desired: &DesiredState) -> Result<Staged> {
        self.stage_services(desired.services.clone())
    }

    /// [`stage`](Reconciler::stage) of services in a persistent map: when it
    /// shares its structure with the last one staged (a source that keeps
    /// one), only what differs is compared.
    pub fn stage_services(&mut self, desired: ServiceMap) -> Result<Staged> {
        let start = Instant::now();
        // Taken: a stage that fails, or is never finished, leaves a full plan next.
        let full = self.known.is_none();
        let (p, index, emitted) = match self.known.take() {
            Some(mut k) => {
                let changed = changed_vips(&k.desired, &desired);
                let p = plan_change(&self.applied, &desired, &changed, &mut k.index);
                (p, Some(k.index), 0)
            }
            None => {
                let mut index = Index::new(&self.applied, self.writer.capacity());
                let (p, emitted) = match self.plan_all_written(&desired, &mut index) {
                    Ok(p) => p,
                    Err(e) => return self.failed(e),
                };
                // Else built anew from the plan's table once it ran.
                (p, self.applied.index_follows().then_some(index), emitted)
            }
        };
        if let Err(e) = self.writer.write(&p.now) {
            return self.failed(e);
        }
        Ok(Staged {
            staged_took: start.elapsed(),
            writes: emitted + p.now.len() + p.after_grace.len(),
            serving_at: Instant::now(),
            skipped: p.skipped,
            summary: p.summary,
            after_grace: p.after_grace,
            next: p.next,
            desired,
            index,
            full,
        })
    }

    /// A full plan, its services written as they are planned,
    /// [`SERVICES_PER_WRITE`] at a time (the plan of 10,000 services would
    /// otherwise hold ~130,000 ops before the first write); with the count
    /// of ops written.
    fn plan_all_written(
        &mut self,
        desired: &ServiceMap,
        index: &mut Index,
    ) -> Result<(crate::plan::Plan, usize)> {
        let mut failure = None;
        let writer = &mut self.writer;
        let mut write = |ops: &[Op]| match writer.write(ops) {
            Ok(()) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        };
        let planned = plan_all_emitting(
            &self.applied,
            desired,
            index,
            SERVICES_PER_WRITE,
            &mut write,
        );
        planned.map_err(|_| failure.expect("a refused part saved its error"))
    }

    /// After a failed write: the maps are the truth again.
    fn failed(&mut self, e: anyhow::Error) -> Result<Staged> {
        self.reread()?;
        Err(e.context("applying the new table (unchanged services keep serving)"))
    }

    /// Waits out the grace period (a program may still read what the staged
    /// table replaced), then removes what it no longer uses.
    pub async fn finish(&mut self, s: Staged) -> Result<Outcome> {
        let start = Instant::now();
        if !s.after_grace.is_empty() {
            tokio::time::sleep(self.grace).await;
            if let Err(e) = self.writer.write(&s.after_grace) {
                self.reread()?;
                return Err(e.context("removing entries no longer used"));
            }
        }
        self.applied = s.next;
        self.known = match (s.skipped.is_empty(), s.index) {
            (false, _) => None,
            (true, Some(mut index)) => {
                index.commit();
                Some(Known {
                    desired: s.desired,
                    index,
                })
            }
            (true, None) => Some(Known {
                desired: s.desired,
                index: Index::new(&self.applied, self.writer.capacity()),
            }),
        };
        Ok(Outcome {
            summary: s.summary,
            writes: s.writes,
            took: s.staged_took + start.elapsed(),
            serving_at: s.serving_at,
            skipped: s.skipped,
            full: s.full,
        })
    }
}

/// A table in the maps whose leftovers are not yet removed.
pub struct Staged {
    after_grace: Vec<Op>,
    next: Applied,
    /// What it was planned from.
    desired: ServiceMap,
    /// The index of `next` once committed; None: to be built from `next`.
    index: Option<Index>,
    /// Every service was compared.
    full: bool,
    summary: Summary,
    writes: usize,
    /// Plan and first writes.
    staged_took: Duration,
    serving_at: Instant,
    skipped: Vec<(crate::model::Vip, crate::plan::PlanError)>,
}

impl Staged {
    /// What the maps serve from now on.
    pub fn serving(&self) -> &Applied {
        &self.next
    }

    /// The table was written before the programs that read it were
    /// attached (at `attached`): it serves from the later of the two.
    pub fn serves_from(&mut self, attached: Instant) {
        self.serving_at = self.serving_at.max(attached);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Proto, ServiceSpec, Vip};

    /// Applies ops to an `Applied` image (enough to test the recovery logic).
    #[derive(Default)]
    struct Fake {
        ops: Vec<Op>,
        /// Calls of `write`.
        calls: usize,
        fail_at: Option<usize>,
        truth: Applied,
        /// Default: `Capacity::default()`.
        cap: Option<crate::plan::Capacity>,
    }

    impl MapWriter for Fake {
        fn write(&mut self, ops: &[Op]) -> Result<()> {
            self.calls += 1;
            for op in ops {
                if Some(self.ops.len()) == self.fail_at {
                    anyhow::bail!("map full");
                }
                self.ops.push(op.clone());
            }
            Ok(())
        }
        fn read_back(&self) -> Result<(Applied, Vec<Problem>)> {
            Ok((self.truth.clone(), Vec::new()))
        }
        fn capacity(&self) -> crate::plan::Capacity {
            self.cap.unwrap_or_default()
        }
    }

    fn desired(n: u16) -> DesiredState {
        let mut d = DesiredState::default();
        for i in 0..n {
            let vip = Vip {
                addr: format!("11.0.0.{}:80", i + 1).parse().unwrap(),
                proto: Proto::Tcp,
            };
            let mut spec = ServiceSpec::default();
            spec.backends.insert("10.0.0.1:80".parse().unwrap(), 1);
            d.services.insert(vip, spec);
        }
        d
    }

    #[tokio::test]
    async fn second_reconcile_of_the_same_state_writes_nothing() {
        let mut r = Reconciler::adopt(Fake::default(), Duration::ZERO).unwrap();
        let o = r.reconcile(&desired(2)).await.unwrap();
        assert_eq!(o.summary.added, 2);
        let before = r.writer.ops.len();
        let o = r.reconcile(&desired(2)).await.unwrap();
        assert_eq!((o.writes, r.writer.ops.len()), (0, before));
    }

    #[tokio::test]
    async fn a_failed_write_falls_back_to_what_the_maps_hold() {
        let fake = Fake {
            fail_at: Some(3),
            ..Default::default()
        };
        let mut r = Reconciler::adopt(fake, Duration::ZERO).unwrap();
        assert!(r.reconcile(&desired(3)).await.is_err());
        assert_eq!(
            r.applied(),
            &Applied::default(),
            "state re-read from the maps, not the plan"
        );
    }

    /// A staged table serves (its VIPs are what DNS may publish) before the
    /// grace period; what it replaced goes only in `finish`.
    #[tokio::test]
    async fn a_staged_table_serves_before_its_cleanup() {
        let mut r = Reconciler::adopt(Fake::default(), Duration::ZERO).unwrap();
        r.reconcile(&desired(3)).await.unwrap();
        let staged = r.stage(&desired(1)).unwrap();
        assert_eq!(staged.serving().services.len(), 1);
        assert_eq!(r.applied().services.len(), 3, "not applied before finish");
        let written = r.writer.ops.len();
        let o = r.finish(staged).await.unwrap();
        assert_eq!(o.summary.removed, 2);
        assert!(r.writer.ops.len() > written, "the removals wait for finish");
        assert_eq!(r.applied().services.len(), 1);
    }

    /// `n` services on 11.0.0.1, ports 1000.., each with backend 10.0.0.1:80.
    fn one_backend_each(n: u16) -> DesiredState {
        let spec = ServiceSpec {
            backends: [("10.0.0.1:80".parse().unwrap(), 1)].into(),
            ..Default::default()
        };
        let vip = |i: u16| Vip {
            addr: std::net::SocketAddr::new([11, 0, 0, 1].into(), 1000 + i),
            proto: Proto::Tcp,
        };
        DesiredState {
            services: (0..n).map(|i| (vip(i), spec.clone())).collect(),
        }
    }

    /// A full plan writes its services a part at a time; a failed part
    /// falls back to what the maps hold, and the next plan is full again.
    #[tokio::test]
    async fn a_full_plan_writes_in_parts_and_a_failed_part_falls_back() {
        let n = SERVICES_PER_WRITE as u16 + 76;
        let many = one_backend_each(n);
        // The backend (put, counters reset), then 4 ops per service: the
        // failure falls in the second part.
        let first_part = 2 + 4 * SERVICES_PER_WRITE;
        let fake = Fake {
            fail_at: Some(first_part + 10),
            ..Default::default()
        };
        let mut r = Reconciler::adopt(fake, Duration::ZERO).unwrap();
        assert!(r.reconcile(&many).await.is_err());
        assert_eq!(
            r.writer.calls, 2,
            "the first part written, the second failed"
        );
        assert_eq!(
            r.applied(),
            &Applied::default(),
            "what the maps say they hold"
        );
        r.writer.fail_at = None;
        let (calls, before) = (r.writer.calls, r.writer.ops.len());
        let o = r.reconcile(&many).await.unwrap();
        assert!(o.full);
        assert_eq!(o.writes, 2 + 4 * n as usize);
        assert_eq!(r.writer.ops.len() - before, o.writes);
        // Two parts, then the (empty) rest of the plan.
        assert_eq!(r.writer.calls - calls, 3);
        assert_eq!(r.applied().services.len(), n as usize);
    }

    /// Services 11.0.0.1.. each on backend `b`, in a persistent map.
    fn services(n: u16, b: &str) -> ServiceMap {
        let backends: crate::model::Backends = [(b.parse().unwrap(), 1)].into();
        (desired(n).services.into_iter())
            .map(|(vip, spec)| {
                let backends = backends.clone();
                (vip, ServiceSpec { backends, ..spec })
            })
            .collect()
    }

    fn change(map: &ServiceMap, i: u16, b: &str) -> ServiceMap {
        let mut map = map.clone();
        let vip = Vip {
            addr: format!("11.0.0.{}:80", i + 1).parse().unwrap(),
            proto: Proto::Tcp,
        };
        map.insert(
            vip,
            ServiceSpec {
                backends: [(b.parse().unwrap(), 2)].into(),
                ..Default::default()
            },
        );
        map
    }

    /// Runs `desired` through the reconciler; (full plan?, writes).
    async fn run(r: &mut Reconciler<Fake>, desired: &ServiceMap) -> (bool, Vec<Op>) {
        let before = r.writer.ops.len();
        let staged = r.stage_services(desired.clone()).unwrap();
        let o = r.finish(staged).await.unwrap();
        (o.full, r.writer.ops[before..].to_vec())
    }

    /// A change after a full plan compares only what changed, and writes
    /// what a full plan of the same states writes.
    #[tokio::test]
    async fn a_change_is_planned_alone_with_the_writes_of_a_full_plan() {
        let mut r = Reconciler::adopt(Fake::default(), Duration::ZERO).unwrap();
        let first = services(50, "10.0.0.1:80");
        assert!(run(&mut r, &first).await.0, "the first plan is full");
        let second = change(&first, 7, "10.0.0.2:80");
        let want = crate::plan::plan_all(r.applied(), &second, crate::plan::Capacity::default());
        let (full, ops) = run(&mut r, &second).await;
        assert!(!full, "a change is planned alone");
        assert_eq!(ops, [want.now, want.after_grace].concat());
        assert_eq!(r.applied(), &want.next);
        // The same services in a map built anew: compared whole, nothing written.
        let (full, ops) = run(
            &mut r,
            &ServiceMap::from(
                second
                    .iter()
                    .map(|(v, s)| (*v, s.clone()))
                    .collect::<Vec<_>>(),
            ),
        )
        .await;
        assert!(!full && ops.is_empty());
    }

    #[tokio::test]
    async fn a_failed_write_or_an_unfinished_stage_makes_the_next_plan_full() {
        let mut r = Reconciler::adopt(Fake::default(), Duration::ZERO).unwrap();
        let first = services(5, "10.0.0.1:80");
        run(&mut r, &first).await;
        // A stage never finished: the maps may hold more than `applied`.
        drop(r.stage_services(change(&first, 1, "10.0.0.3:80")).unwrap());
        assert!(run(&mut r, &first).await.0);
        assert!(!run(&mut r, &change(&first, 2, "10.0.0.4:80")).await.0);
        r.writer.fail_at = Some(r.writer.ops.len());
        assert!(r.stage_services(change(&first, 3, "10.0.0.5:80")).is_err());
        r.writer.fail_at = None;
        assert!(
            run(&mut r, &first).await.0,
            "after a failed write, a full plan"
        );
    }

    #[tokio::test]
    async fn a_plan_that_skips_makes_the_next_plan_full() {
        let cap = crate::plan::Capacity {
            services: 3,
            ..Default::default()
        };
        let fake = Fake {
            cap: Some(cap),
            ..Default::default()
        };
        let mut r = Reconciler::adopt(fake, Duration::ZERO).unwrap();
        let four = services(4, "10.0.0.1:80");
        let staged = r.stage_services(four.clone()).unwrap();
        assert_eq!(r.finish(staged).await.unwrap().skipped.len(), 1);
        let (full, _) = run(&mut r, &change(&four, 0, "10.0.0.2:80")).await;
        assert!(full, "a skipped service is retried by a full plan");
    }

    /// After adopting a table with a stale service whose range overlaps a
    /// kept one, the index is built anew from the first plan's table: the
    /// next change writes what a full plan writes.
    #[tokio::test]
    async fn after_adopting_a_stale_table_a_change_writes_what_a_full_plan_writes() {
        let first = services(3, "10.0.0.1:80");
        let cap = crate::plan::Capacity::default();
        let mut truth = crate::plan::plan_all(&Applied::default(), &first, cap).next;
        let vips: Vec<Vip> = truth.services.keys().copied().collect();
        let base = truth.services[&vips[0]].slot_base;
        let svc = truth.services.get_mut(&vips[1]).unwrap();
        (svc.slot_base, svc.stale) = (base + 100, true);
        let fake = Fake {
            truth,
            ..Default::default()
        };
        let mut r = Reconciler::adopt(fake, Duration::ZERO).unwrap();
        assert!(run(&mut r, &first).await.0);
        for (i, b) in [(0, "10.0.0.2:80"), (2, "10.0.0.3:80"), (1, "10.0.0.4:80")] {
            let next = change(&first, i, b);
            let want = crate::plan::plan_all(r.applied(), &next, cap);
            let (full, ops) = run(&mut r, &next).await;
            assert!(!full);
            assert_eq!(ops, [want.now, want.after_grace].concat());
        }
    }
}
