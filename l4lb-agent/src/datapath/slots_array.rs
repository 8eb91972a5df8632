//! The slots array (every service's Maglev table, one contiguous range each),
//! written through mmap: the map is created BPF_F_MMAPABLE, so a table of
//! thousands of slots is one memory copy instead of one syscall per slot.
//! Only the pages of the table being written are mapped, and only meanwhile.
//! The kernel lays array elements out 8 bytes apart (value size rounded up to
//! 8), so each u32 slot is written as the low half of a u64.
use std::os::fd::AsFd;

use aya::maps::{Map, MapData, MapError};

use super::mmap::Mapping;

#[cfg(not(target_endian = "little"))]
compile_error!("the slots array is written as little-endian u64 elements");

/// Bytes per array element in the kernel's layout.
const ELEM: usize = 8;

/// The most bytes one mapping of [`SlotsArray::write_all`] spans (mapped
/// only while it writes: the resident pages stay bounded).
const WINDOW_MAX: u64 = 1 << 20;

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

    /// Writes each `(base, backends)` as [`write`](Self::write) does, in
    /// order; consecutive tables within [`WINDOW_MAX`] of each other share
    /// one mapping (a full sync's tables are adjacent: one mmap for hundreds
    /// instead of one each). On failure: how many were written, and why.
    pub fn write_all(&mut self, tables: &[(u32, Vec<u32>)]) -> Result<(), (usize, MapError)> {
        let span = |t: &(u32, Vec<u32>)| (u64::from(t.0), u64::from(t.0) + t.1.len() as u64);
        let mut i = 0;
        while i < tables.len() {
            let (mut lo, mut hi) = span(&tables[i]);
            if hi > u64::from(self.capacity) || tables[i].1.is_empty() {
                // One table alone: its error, or nothing to write.
                self.write(tables[i].0, &tables[i].1).map_err(|e| (i, e))?;
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while let Some(t) = tables.get(j) {
                let (l, h) = span(t);
                let (l, h) = (l.min(lo), h.max(hi));
                if t.1.is_empty()
                    || h > u64::from(self.capacity)
                    || (h - l) * ELEM as u64 > WINDOW_MAX
                {
                    break;
                }
                (lo, hi, j) = (l, h, j + 1);
            }
            let (first, last) = (lo as usize * ELEM, hi as usize * ELEM);
            let w = self.window(first, last).map_err(|e| (i, e))?;
            for (base, backends) in &tables[i..j] {
                // SAFETY: the window covers bytes first..last, which holds
                // this table's bytes (its span was merged into lo..hi).
                let slots = unsafe {
                    let at = w.start().add(*base as usize * ELEM - first);
                    std::slice::from_raw_parts_mut(at.cast::<u64>(), backends.len())
                };
                for (slot, id) in slots.iter_mut().zip(backends) {
                    *slot = u64::from(*id);
                }
            }
            drop(w);
            i = j;
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

    /// Maps the pages holding bytes `first..last` of the array, only while
    /// the returned mapping lives: the table (40 MB at 5M slots: kernel
    /// memory of the map) stays out of the agent's resident set.
    fn window(&self, first: usize, last: usize) -> Result<Mapping, MapError> {
        Mapping::pages(self.map.fd().as_fd(), first, last)
    }
}
