//! The slots array (every service's Maglev table, one contiguous range each),
//! written through mmap: the map is created BPF_F_MMAPABLE, so a table of
//! thousands of slots is one memory copy instead of one syscall per slot.
//! Only the pages of the table being written are mapped, and only meanwhile.
//! The kernel lays array elements out 8 bytes apart (value size rounded up to
//! 8), so each u32 slot is written as the low half of a u64.
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{Map, MapData, MapError};

use super::mmap::Mapping;
use crate::plan::SlotTable;

#[cfg(not(target_endian = "little"))]
compile_error!("the slots array is written as little-endian u64 elements");

/// Bytes per array element in the kernel's layout.
const ELEM: usize = 8;

/// The most bytes one mapping of [`Filler::fill_all`] spans beyond its first
/// table (mapped only while it writes: the resident pages stay bounded).
const WINDOW_MAX: usize = 1 << 20;

pub struct SlotsArray {
    map: MapData,
    capacity: u32,
}

impl SlotsArray {
    pub fn new(map: Map) -> Result<SlotsArray, MapError> {
        let Map::Array(map) = map else {
            return Err(MapError::InvalidName {
                name: l4lb_common::SLOTS_MAP.into(),
            });
        };
        let capacity = map.info()?.max_entries();
        Ok(SlotsArray { map, capacity })
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn map(&self) -> &MapData {
        &self.map
    }

    /// Writes `backends` into slots `base..`. Programs read slots only through
    /// a service value written after this returns (a bpf() syscall, which
    /// orders these stores before it), so they never see a half-written table.
    pub fn write(&mut self, base: u32, backends: &[u32]) -> Result<(), MapError> {
        let end = u64::from(base) + backends.len() as u64;
        if end > u64::from(self.capacity) {
            return Err(MapError::OutOfBounds {
                index: end.min(u64::from(u32::MAX)) as u32,
                max_entries: self.capacity,
            });
        }
        if backends.is_empty() {
            return Ok(());
        }
        let (first, last) = (base as usize * ELEM, end as usize * ELEM);
        let w = self.window(first, last)?;
        // SAFETY: the window covers bytes first..last of the array (checked
        // against the capacity above), 8-byte aligned like every element.
        let slots = unsafe {
            let at = w.start().cast::<u64>();
            std::slice::from_raw_parts_mut(at, backends.len())
        };
        for (slot, id) in slots.iter_mut().zip(backends) {
            // Little-endian: the u32 value is the element's first 4 bytes.
            *slot = u64::from(*id);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Slots `base..base + count` (to check a table read back from pins).
    pub fn read(&self, base: u32, count: u32) -> Result<Vec<u32>, MapError> {
        let end = u64::from(base) + u64::from(count);
        if end > u64::from(self.capacity) {
            return Err(MapError::OutOfBounds {
                index: end.min(u64::from(u32::MAX)) as u32,
                max_entries: self.capacity,
            });
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let (first, last) = (base as usize * ELEM, end as usize * ELEM);
        let w = self.window(first, last)?;
        // SAFETY: as in `write`: the window covers bytes first..last.
        let slots = unsafe {
            let at = w.start().cast::<u64>();
            std::slice::from_raw_parts(at, count as usize)
        };
        // Little-endian: the u32 value is the element's first 4 bytes.
        Ok(slots.iter().map(|s| *s as u32).collect())
    }

    /// A handle that fills and writes tables on another thread.
    pub fn filler(&self) -> Result<Filler, MapError> {
        let fd = self
            .map
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|io_error| {
                MapError::SyscallError(aya::sys::SyscallError {
                    call: "dup",
                    io_error,
                })
            })?;
        Ok(Filler {
            fd,
            capacity: self.capacity,
        })
    }

    /// Maps the pages holding bytes `first..last` of the array, only while
    /// the returned mapping lives: the table (40 MB at 5M slots: kernel
    /// memory of the map) stays out of the agent's resident set.
    fn window(&self, first: usize, last: usize) -> Result<Mapping, MapError> {
        Mapping::pages(self.map.fd().as_fd(), first, last)
    }
}

/// The slots array's fd, for the thread that fills a chunk's tables and
/// writes them in place (`ahead.rs`).
pub struct Filler {
    fd: OwnedFd,
    capacity: u32,
}

impl Filler {
    /// Fills each `(base, table)` and writes it into slots `base..`, in
    /// order, as [`SlotsArray::write`] does; one mapping serves the tables
    /// that follow within [`WINDOW_MAX`] (a full sync's tables are adjacent:
    /// one mmap for hundreds). Each table is written as it is filled, so its
    /// buffer is the next one's (no table is held: no fresh pages per table).
    /// On failure: how many were written, and why.
    pub fn fill_all(&self, tables: &[(u32, &SlotTable)]) -> Result<(), (usize, MapError)> {
        let cap = self.capacity as usize * ELEM;
        let mut open: Option<(usize, usize, Mapping)> = None;
        for (i, (base, table)) in tables.iter().enumerate() {
            let backends = table.fill();
            let first = *base as usize * ELEM;
            let last = first + backends.len() * ELEM;
            if last > cap {
                let index = (u64::from(*base) + backends.len() as u64).min(u64::from(u32::MAX));
                let e = MapError::OutOfBounds {
                    index: index as u32,
                    max_entries: self.capacity,
                };
                return Err((i, e));
            }
            if backends.is_empty() {
                continue;
            }
            let inside = |(lo, hi, _): &(usize, usize, Mapping)| *lo <= first && last <= *hi;
            if !open.as_ref().is_some_and(inside) {
                drop(open.take()); // unmapped before the next is made
                let hi = cap.min(first + WINDOW_MAX).max(last);
                let w = Mapping::pages(self.fd.as_fd(), first, hi).map_err(|e| (i, e))?;
                open = Some((first, hi, w));
            }
            let (lo, _, w) = open.as_ref().expect("mapped above");
            // SAFETY: the window covers bytes lo..hi of the array, which hold
            // this table's bytes first..last (checked just above).
            let slots = unsafe {
                let at = w.start().add(first - lo).cast::<u64>();
                std::slice::from_raw_parts_mut(at, backends.len())
            };
            for (slot, id) in slots.iter_mut().zip(&backends) {
                // Little-endian: the u32 value is the element's first 4 bytes.
                *slot = u64::from(*id);
            }
        }
        drop(open);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
