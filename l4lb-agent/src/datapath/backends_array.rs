//! `L4LB_BACKENDS`: backend id → address, an mmap-able array the agent
//! writes through memory (the programs read one element by id instead of
//! looking an id up in a hash). An element whose `family` is 0 is a free id.
//!
//! Written through a few mapped windows of the array at a time
//! ([`Windows`]), not a mapping of it all: those pages would otherwise be
//! resident for the agent's life.
//!
//! Readers never see a half-written entry they use: the plan writes a
//! backend before any slot or service names it and frees it only after
//! nothing does; a reader of a stale id (a tracked flow's) sees either the
//! free marker or a whole entry, because `family` is cleared first and set
//! last around every change.
use aya::maps::{Map, MapError};
use l4lb_common::Backend;

use super::mmap::Windows;

/// One array element as the kernel lays it out: the value, then padding to
/// the 8-byte stride.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Element {
    backend: Backend,
}

const _: () = assert!(size_of::<Element>() == size_of::<Backend>().next_multiple_of(8));

pub struct BackendsArray {
    elems: Windows<Element>,
}

impl BackendsArray {
    pub fn new(map: Map) -> Result<BackendsArray, MapError> {
        Ok(BackendsArray {
            elems: Windows::new(map, l4lb_common::BACKENDS_MAP)?,
        })
    }

    /// Ids `0..capacity` fit.
    pub fn capacity(&self) -> u32 {
        self.elems.len as u32
    }

    /// Calls `f` with every id in use and its backend, in id order (each
    /// element read whole: the running agent may rewrite it while the CLI
    /// reads).
    pub fn for_each(&self, mut f: impl FnMut(u32, Backend)) -> Result<(), MapError> {
        self.elems.for_each(|id, e| {
            if e.backend.family != 0 {
                f(id as u32, e.backend);
            }
        })
    }

    /// How many ids are in use.
    pub fn count(&self) -> Result<u64, MapError> {
        let mut n = 0;
        self.for_each(|_, _| n += 1)?;
        Ok(n)
    }

    /// Writes `b` as id `id`'s backend. `b.family` must not be 0 (it would
    /// read as a free id): such a backend is refused.
    pub fn put(&mut self, id: u32, b: &Backend) -> Result<(), MapError> {
        if b.family == 0 {
            let why = format!("backend {id} has no address family");
            return Err(MapError::IoError(std::io::Error::other(why)));
        }
        store(self.element(id)?, b);
        Ok(())
    }

    /// Frees id `id` (nothing names it any more).
    pub fn remove(&mut self, id: u32) -> Result<(), MapError> {
        let e = self.element(id)?;
        store(e, &Backend::default());
        Ok(())
    }

    fn element(&mut self, id: u32) -> Result<*mut Backend, MapError> {
        let max_entries = self.capacity();
        match self.elems.get_mut(id as usize)? {
            Some(e) => Ok(&raw mut e.backend),
            None => Err(MapError::OutOfBounds {
                index: id,
                max_entries,
            }),
        }
    }
}

/// Writes `new` over `e`, `family` cleared first and written last, so that a
/// reader that checks `family` after the write began sees a free id or the
/// whole new entry. A reader that checked it just before could still read the
/// new address: ids are reused only after the grace period, when nothing but a
/// tracked XDP flow's stale id can name one, and that flow's membership is
/// checked first.
fn store(e: *mut Backend, new: &Backend) {
    // SAFETY: `e` is a valid, aligned element of the mapping; volatile so
    // the steps reach memory in this order.
    unsafe {
        (&raw mut (*e).family).write_volatile(0);
        publish();
        (&raw mut (*e).addr).write_volatile(new.addr);
        (&raw mut (*e).port).write_volatile(new.port);
        (&raw mut (*e)._pad).write_volatile(0);
        publish();
        (&raw mut (*e).family).write_volatile(new.family);
    }
    publish();
}

fn publish() {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}
