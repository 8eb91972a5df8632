//! A shared read-write mapping of the pages holding a byte range of a
//! BPF_F_MMAPABLE array map, unmapped on drop: the slots array writes its
//! tables through short-lived ones, the backends and service generation
//! arrays through a few windows at a time ([`Windows`]), the small VIP
//! filter through one mapping for the handle's life ([`Mapped`]). The kernel
//! maps every page of such a mapping when it is made, so a whole-array one
//! is resident for as long as it lives. Hand-written with libc because aya
//! 0.14 has no mmap API for maps.
use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    ptr::NonNull,
};

use aya::{
    maps::{Map, MapData, MapError},
    sys::SyscallError,
};

mod windows;
pub(super) use windows::Windows;

pub(super) struct Mapping {
    /// The first mapped page.
    ptr: NonNull<u8>,
    len: usize,
    /// Where byte `first` of the map is in the mapping.
    skip: usize,
}

impl Mapping {
    /// Maps the pages holding bytes `first..last` of the array behind `fd`.
    pub(super) fn pages(fd: BorrowedFd, first: usize, last: usize) -> Result<Mapping, MapError> {
        let page = page_size();
        let offset = first / page * page;
        let len = (last - offset).div_ceil(page) * page;
        // SAFETY: mapping part of a BPF_F_MMAPABLE array map fd, shared,
        // read-write; the kernel checks offset + length against the map.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        let failed = |io_error| {
            MapError::SyscallError(SyscallError {
                call: "mmap",
                io_error,
            })
        };
        if ptr == libc::MAP_FAILED {
            return Err(failed(std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| failed(std::io::Error::other("null mapping")))?;
        Ok(Mapping {
            ptr,
            len,
            skip: first - offset,
        })
    }

    /// Byte `first` of the range it was made for.
    pub(super) fn start(&self) -> *mut u8 {
        // SAFETY: `skip` < one page, inside the mapping.
        unsafe { self.ptr.as_ptr().add(self.skip) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: plain FFI.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize
}

/// A whole BPF_F_MMAPABLE array mapped read-write for the handle's life.
pub(super) struct Mapped<T> {
    mapping: Mapping,
    pub(super) len: usize,
    _map: MapData,
    _elem: std::marker::PhantomData<T>,
}

/// The array behind `map` if its elements are `T`s in the kernel's layout,
/// and its length.
fn array_of<T>(map: Map, name: &str) -> Result<(MapData, usize), MapError> {
    let Map::Array(map) = map else {
        return Err(MapError::InvalidName { name: name.into() });
    };
    // The kernel's element stride is the value size rounded up to 8.
    assert_eq!(size_of::<T>() % 8, 0, "array element stride");
    let info = map.info()?;
    let stride = (info.value_size() as usize).next_multiple_of(8);
    if stride != size_of::<T>() {
        return Err(MapError::InvalidValueSize {
            size: info.value_size() as usize,
            expected: size_of::<T>(),
        });
    }
    Ok((map, info.max_entries() as usize))
}

impl<T: Copy> Mapped<T> {
    pub(super) fn new(map: Map, name: &str) -> Result<Mapped<T>, MapError> {
        let (map, len) = array_of::<T>(map, name)?;
        let mapping = Mapping::pages(map.fd().as_fd(), 0, len * size_of::<T>())?;
        Ok(Mapped {
            mapping,
            len,
            _map: map,
            _elem: std::marker::PhantomData,
        })
    }

    pub(super) fn slice(&mut self) -> &mut [T] {
        // SAFETY: `len` elements from the start of the mapping (page
        // aligned, so aligned for T), which lives as long as self.
        unsafe { std::slice::from_raw_parts_mut(self.mapping.start().cast::<T>(), self.len) }
    }
}

// SAFETY: the mapping is owned by the handle and only touched through &mut self.
unsafe impl<T: Send> Send for Mapped<T> {}
// SAFETY: as above; a shared reference reaches no element.
unsafe impl<T: Sync> Sync for Mapped<T> {}

/// Drops this process's mappings of the pages wholly inside `bytes`, a part
/// of the binary's read-only data: the embedded BPF object (~2 MB) is read
/// once, when aya parses it, and its pages would otherwise stay resident for
/// the agent's life. The file's pages stay in the page cache, and a later
/// read faults them back in, unchanged (a private, never written mapping).
pub(super) fn release_read_only(bytes: &'static [u8]) {
    let page = page_size();
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: whole pages of a read-only static; MADV_DONTNEED on a
        // private file mapping only unmaps them, a later access refaults
        // the same bytes from the file. Its failure leaves them resident.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

#[cfg(test)]
mod tests {
    /// A static spanning several pages, as the embedded object does.
    static PAGES: [u8; 5 * 4096 + 123] = {
        let mut b = [0u8; 5 * 4096 + 123];
        let mut i = 0;
        while i < b.len() {
            b[i] = (i % 251) as u8;
            i += 1;
        }
        b
    };

    #[test]
    fn released_read_only_pages_read_back_unchanged() {
        let before = PAGES.to_vec();
        super::release_read_only(&PAGES);
        assert_eq!(std::hint::black_box(&PAGES[..]), &before[..]);
    }
}
