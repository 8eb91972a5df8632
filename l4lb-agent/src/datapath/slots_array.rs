//! The slots array (every service's Maglev table, one contiguous range each),
//! written through mmap: the map is created BPF_F_MMAPABLE, so a table of
//! thousands of slots is one memory copy instead of one syscall per slot.
//! Hand-written with libc because aya 0.14 has no mmap API for maps.
//! The kernel lays array elements out 8 bytes apart (value size rounded up to
//! 8), so each u32 slot is written as the low half of a u64.
use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::{
    maps::{Map, MapData, MapError},
    sys::SyscallError,
};

#[cfg(not(target_endian = "little"))]
compile_error!("the slots array is written as little-endian u64 elements");

/// Bytes per array element in the kernel's layout.
const ELEM: usize = 8;

pub struct SlotsArray {
    map: MapData,
    capacity: u32,
    /// Mapped on first write (readers such as the CLI never need it).
    region: Option<Region>,
}

struct Region {
    ptr: NonNull<u64>,
    len_bytes: usize,
}

// SAFETY: the region is only touched through `&mut SlotsArray`.
unsafe impl Send for SlotsArray {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len_bytes) };
    }
}

impl SlotsArray {
    pub fn new(map: Map) -> Result<SlotsArray, MapError> {
        let Map::Array(map) = map else {
            return Err(MapError::InvalidName { name: l4lb_common::SLOTS_MAP.into() });
        };
        let capacity = map.info()?.max_entries();
        Ok(SlotsArray { map, capacity, region: None })
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
            return Err(MapError::OutOfBounds { index: end.min(u64::from(u32::MAX)) as u32, max_entries: self.capacity });
        }
        let region = self.region()?;
        // SAFETY: bounds checked above; the mapping covers `capacity` 8-byte elements.
        let slots = unsafe { std::slice::from_raw_parts_mut(region.ptr.as_ptr(), region.len_bytes / ELEM) };
        for (slot, id) in slots[base as usize..end as usize].iter_mut().zip(backends) {
            // Little-endian: the u32 value is the element's first 4 bytes.
            *slot = u64::from(*id);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn region(&mut self) -> Result<&Region, MapError> {
        if self.region.is_none() {
            // SAFETY: plain FFI; the kernel rounds the length up to pages.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            let len_bytes = (self.capacity as usize * ELEM).div_ceil(page) * page;
            let fd = self.map.fd().as_fd().as_raw_fd();
            // SAFETY: mapping a BPF_F_MMAPABLE array map fd, shared, read-write.
            let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len_bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
            if ptr == libc::MAP_FAILED {
                return Err(MapError::SyscallError(SyscallError { call: "mmap", io_error: std::io::Error::last_os_error() }));
            }
            let ptr = NonNull::new(ptr.cast::<u64>()).ok_or(MapError::SyscallError(SyscallError {
                call: "mmap",
                io_error: std::io::Error::other("null mapping"),
            }))?;
            self.region = Some(Region { ptr, len_bytes });
        }
        Ok(self.region.as_ref().expect("just mapped"))
    }
}
