//! BPF_MAP_UPDATE_BATCH: many entries of one map in one bpf() call. A full
//! sync writes ~100,000 backend and member entries; one syscall each was most
//! of its apply time. Hand-written with libc because aya 0.14 has no batch
//! API (like `slots_array.rs`'s mmap).
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `BPF_MAP_UPDATE_BATCH` from `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `keys[i] → values[i]` (BPF_ANY). Keys and values must be the map's
/// `#[repr(C)]` key and value types. On failure returns how many entries were
/// written before it and the error; EINVAL or ENOTSUP from a kernel without
/// batch support for this map comes back with 0 written.
pub fn update<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut done = 0;
    // The kernel may stop early (count < asked) without an error: go on.
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: u32::try_from(keys.len() - done).unwrap_or(u32::MAX),
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` points at `count` keys and values that outlive the
        // call; the kernel reads them and writes back only `attr.count`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as libc::c_uint,
            )
        };
        let written = attr.count as usize;
        if r < 0 {
            return Err((
                done + written.min(keys.len() - done),
                io::Error::last_os_error(),
            ));
        }
        if written == 0 {
            return Err((done, io::Error::other("BPF_MAP_UPDATE_BATCH wrote nothing")));
        }
        done += written;
    }
    Ok(())
}
