//! A shared read-write mapping of the pages holding a byte range of a
//! BPF_F_MMAPABLE array map, unmapped on drop: the slots array writes its
//! tables through short-lived ones, XDP's fast-path arrays keep one for the
//! handle's life. Hand-written with libc because aya 0.14 has no mmap API
//! for maps.
use std::{
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
};

use aya::{maps::MapError, sys::SyscallError};

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
