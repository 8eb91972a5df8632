//! A chunk's tables and members written ahead of its services' values, by
//! a helper thread or by the writer itself, whichever takes the chunk first.
//!
//! A full sync's part holds a few chunks (`chunk.rs`). Each chunk needs its
//! Maglev tables filled and written into free slot ranges, and its members
//! put, before the writer puts its services' values. Those two steps name no
//! id a program can reach (a table is read only through the value written
//! after it; members only by the agent and the CLI), so they may run on
//! another thread, chunks ahead: the helper takes the next chunk nobody has
//! taken, and the writer, arriving at a chunk nobody has taken, does it
//! itself instead of waiting (a helper that gets no CPU costs nothing then).
//! Each chunk's own order is kept: tables, members, then (by the writer,
//! after it learns the chunk is done) counters and service values.
use std::{
    os::fd::{AsFd, OwnedFd},
    sync::{
        Condvar, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use aya::maps::MapError;

use super::{chunk::Chunk, slots_array::Filler};
use crate::plan::Op;

/// What the chunk's preparation did: on failure, the plan index of the op
/// that failed.
pub type Done = Result<Members, (usize, MapError)>;

/// Whether the chunk's members are in the map.
#[derive(Debug, PartialEq, Eq)]
pub enum Members {
    Written,
    /// This kernel has no batch update for the map: the writer puts them.
    Left,
}

/// The fds a chunk's preparation writes through (its own: the writer keeps
/// `&mut Maps`).
pub struct Preparer {
    pub slots: Filler,
    pub members: OwnedFd,
    /// Batch writes work here (false: members are left to the writer).
    pub batches: AtomicBool,
}

impl Preparer {
    /// Fills and writes `c`'s tables, then puts its members in one batch.
    pub fn prepare(&self, c: &Chunk<'_>) -> Done {
        let tables: Vec<(u32, &crate::plan::SlotTable)> = c
            .slots
            .iter()
            .filter_map(|(_, op)| match op {
                Op::WriteSlots { base, table } => Some((*base, table)),
                _ => None,
            })
            .collect();
        self.slots
            .fill_all(&tables)
            .map_err(|(k, e)| (c.slots[k].0, e))?;
        if c.members.is_empty() {
            return Ok(Members::Written);
        }
        if !self.batches.load(Ordering::Relaxed) {
            return Ok(Members::Left);
        }
        let (keys, values) = super::chunk::member_batch(c.members.iter().map(|(_, op)| *op));
        match super::batch::update(self.members.as_fd(), &keys, &values) {
            Ok(()) => Ok(Members::Written),
            Err((0, e)) if super::no_batch(&e) => {
                self.batches.store(false, Ordering::Relaxed);
                Ok(Members::Left)
            }
            Err((done, e)) => {
                let at = c.members[done.min(c.members.len() - 1)].0;
                Err((at, super::chunk::batch_error(e)))
            }
        }
    }
}

/// The error the writer sees for a chunk whose helper panicked.
fn panicked() -> MapError {
    MapError::SyscallError(aya::sys::SyscallError {
        call: "preparing a chunk on the helper thread",
        io_error: std::io::Error::other("the helper thread panicked"),
    })
}

/// Which chunks are taken, and what their preparation did.
pub struct Board {
    /// The first chunk nobody has taken.
    next: AtomicUsize,
    done: Mutex<Vec<Option<Done>>>,
    ready: Condvar,
    /// Set on the first failure: nobody takes another chunk.
    stop: AtomicBool,
}

impl Board {
    pub fn new(chunks: usize) -> Board {
        Board {
            next: AtomicUsize::new(0),
            done: Mutex::new((0..chunks).map(|_| None).collect()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// The helper: prepares the next untaken chunk until none is left or
    /// something failed.
    pub fn help(&self, p: &Preparer, chunks: &[Chunk<'_>]) {
        while !self.stop.load(Ordering::Acquire) {
            let k = self.next.fetch_add(1, Ordering::AcqRel);
            let Some(c) = chunks.get(k) else { return };
            // A panic here must still hand the writer an outcome for `k`, or
            // it would wait for it forever; the panic then ends the scope.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.prepare(c)));
            let (done, panic) = match run {
                Ok(done) => (done, None),
                Err(panic) => (Err((c.first_index(), panicked())), Some(panic)),
            };
            if done.is_err() {
                self.stop.store(true, Ordering::Release);
            }
            *self
                .done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(k)
                .expect("one outcome per chunk") = Some(done);
            self.ready.notify_all();
            if let Some(panic) = panic {
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// The writer, at chunk `k`: prepares it if nobody took it, else waits
    /// for the helper's outcome.
    pub fn take(&self, k: usize, p: &Preparer, c: &Chunk<'_>) -> Done {
        let mine = self
            .next
            .compare_exchange(k, k + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        let done = match mine {
            true => p.prepare(c),
            false => {
                let mut slots = self.done.lock().expect("no panic holding it");
                loop {
                    if let Some(done) = slots[k].take() {
                        break done;
                    }
                    slots = self.ready.wait(slots).expect("no panic holding it");
                }
            }
        };
        if done.is_err() {
            self.stop.store(true, Ordering::Release);
        }
        done
    }

    /// The writer stops here (a write of its own failed).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}
