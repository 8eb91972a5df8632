//! BPF_MAP_UPDATE_BATCH / BPF_MAP_LOOKUP_BATCH: many entries of one map in one
//! bpf() call. A full sync writes ~100,000 backend and member entries; one
//! syscall each was most of its apply time. A counter read takes one id's
//! run of (id, CPU) records in one call. Hand-written with libc because aya
//! 0.14 has no batch API (like `slots_array.rs`'s mmap).
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_UPDATE_BATCH` from `enum bpf_cmd`
/// (include/uapi/linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
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
        let r = unsafe { bpf_batch(BPF_MAP_UPDATE_BATCH, &mut attr) };
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

/// Reads entries `first..first + out.len()` of an array map (u32 keys) into
/// `out`, in one call. The kernel walks the keys after `in_batch`, so the
/// walk starts after `first - 1` (from the first key when `first` is 0); it
/// ends with ENOENT at the array's end, which is fine once `out` is full.
pub fn lookup_array_run<V: Copy>(map: BorrowedFd<'_>, first: u32, out: &mut [V]) -> io::Result<()> {
    let count = u32::try_from(out.len()).map_err(|_| io::Error::other("run too long"))?;
    let mut keys = vec![0u32; out.len()];
    let before = first.checked_sub(1);
    let mut last = 0u32;
    let mut attr = BatchAttr {
        in_batch: before.as_ref().map_or(0, |k| k as *const u32 as u64),
        out_batch: &mut last as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: out.as_mut_ptr() as u64,
        count,
        map_fd: map.as_raw_fd() as u32,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` points at `count` keys and values and a key for the
    // batch position, all of the map's sizes (u32 keys, `V` values), that
    // outlive the call; the kernel writes at most `count` of each.
    let r = unsafe { bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr) };
    let err = (r < 0).then(io::Error::last_os_error);
    let full = attr.count == count && keys.first() == Some(&first);
    match err {
        _ if full => Ok(()),
        Some(e) => Err(e),
        None => Err(io::Error::other(format!(
            "BPF_MAP_LOOKUP_BATCH read {} of {count} entries from key {first}",
            attr.count
        ))),
    }
}

/// Most entries [`lookup_hash`] asks for when a bucket holds more than it
/// asked (ENOSPC): past this the map is not one the agent made.
const MOST_PER_CALL: usize = 1 << 16;

/// Every entry of a hash map, read `per_call` at a time (the kernel walks
/// its buckets; an entry put or removed meanwhile may be seen or missed, as
/// in a walk key by key). `Ok(None)`: this kernel has no batch lookup for
/// the map (the caller walks it key by key). `K` and `V` must be the map's
/// `#[repr(C)]` key and value types (not a per-CPU map's: see
/// [`for_each_in_hash`]).
pub fn lookup_hash<K: Copy + Default, V: Copy + Default>(
    map: BorrowedFd<'_>,
    per_call: usize,
) -> io::Result<Option<Vec<(K, V)>>> {
    let mut all = Vec::new();
    let read = for_each_in_hash::<K, V>(map, per_call, 1, |k, v| all.push((*k, v[0])))?;
    Ok(read.map(|()| all))
}

/// Calls `f` with each entry of a hash map and its `per_key` values: a
/// per-CPU map's are one per possible CPU (`V`'s size must then be a
/// multiple of 8, as the kernel lays them out). Read `per_call` entries a
/// call, held only for that call; `Ok(None)` as for [`lookup_hash`].
pub fn for_each_in_hash<K: Copy + Default, V: Copy + Default>(
    map: BorrowedFd<'_>,
    mut per_call: usize,
    per_key: usize,
    mut f: impl FnMut(&K, &[V]),
) -> io::Result<Option<()>> {
    let per_key = per_key.max(1);
    let mut keys = vec![K::default(); per_call];
    let mut values = vec![V::default(); per_call * per_key];
    // The kernel's position in a hash map is a bucket index.
    let (mut at, mut next): (Option<u32>, u32) = (None, 0);
    loop {
        let mut attr = BatchAttr {
            in_batch: at.as_ref().map_or(0, |b| b as *const u32 as u64),
            out_batch: &mut next as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(per_call).unwrap_or(u32::MAX),
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` points at `count` keys and `count` values of the
        // map's sizes (`per_key` `V`s each) and at two bucket indexes, all
        // outliving the call; the kernel writes at most `count` of each.
        let r = unsafe { bpf_batch(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let n = (attr.count as usize).min(per_call);
        for (k, v) in keys[..n].iter().zip(values.chunks_exact(per_key)) {
            f(k, v);
        }
        if r >= 0 {
            at = Some(next);
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOENT) => return Ok(Some(())),
            // One bucket holds more entries than were asked for.
            Some(libc::ENOSPC) if n == 0 && per_call < MOST_PER_CALL => {
                per_call *= 2;
                keys.resize(per_call, K::default());
                values.resize(per_call * per_key, V::default());
            }
            _ if at.is_none() && n == 0 && super::no_batch(&e) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Ascending `ids` cut into runs an array read can take in one call: each
/// item is `(first, end, ids)` with every id of `ids` in `first..end`, at
/// most `per_run` ids wide and ending at `len` (the array's ids). An id at
/// or past `len` comes alone with `end <= first` (an empty run: nothing to
/// read for it).
pub fn id_runs(ids: &[u32], per_run: u32, len: u32) -> impl Iterator<Item = (u32, u32, &[u32])> {
    let mut rest = ids;
    std::iter::from_fn(move || {
        let &first = rest.first()?;
        let end = first.saturating_add(per_run.max(1)).min(len);
        let n = rest.iter().take_while(|&&id| id < end).count().max(1);
        let (now, later) = rest.split_at(n);
        rest = later;
        Some((first, end, now))
    })
}

/// One batch command of bpf(2) on `attr`.
///
/// # Safety
/// Every pointer in `attr` must be valid for the command, for `attr.count`
/// entries of the map's key and value sizes.
unsafe fn bpf_batch(cmd: libc::c_long, attr: &mut BatchAttr) -> libc::c_long {
    // SAFETY: the caller's contract; `attr` is a live `union bpf_attr` prefix.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as libc::c_uint,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, os::fd::AsFd};

    use aya::maps::MapData;

    use super::*;

    /// A hash map of u64 -> u64 with room for `len` (needs root, as the agent).
    fn hash(len: u32) -> MapData {
        const BPF_MAP_TYPE_HASH: u32 = 1;
        let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_HASH, 8, 8, len, 0);
        MapData::create(obj, "l4lb_test_hash", None).expect("creating the hash (root?)")
    }

    /// Runs cover each id once, within their bounds; ids past the array
    /// come alone with an empty run.
    #[test]
    fn id_runs_cut_ascending_ids_at_the_run_width_and_the_array_end() {
        let ids = [0, 3, 4, 9, 10, 11, 25, 30, 31, 40];
        let runs: Vec<(u32, u32, Vec<u32>)> = id_runs(&ids, 10, 31)
            .map(|(f, e, now)| (f, e, now.to_vec()))
            .collect();
        assert_eq!(
            runs,
            [
                (0, 10, vec![0, 3, 4, 9]),
                (10, 20, vec![10, 11]),
                (25, 31, vec![25, 30]),
                (31, 31, vec![31]),
                (40, 31, vec![40]),
            ]
        );
        assert_eq!(id_runs(&[], 10, 31).count(), 0);
    }

    /// Every entry comes back once, whatever the batch size: one entry per
    /// call makes every bucket that holds two overflow the first ask
    /// (ENOSPC, then a larger ask), and an empty map reads as empty.
    #[test]
    fn a_hash_map_reads_back_whole_in_batches() {
        // A kernel test fails without root, never passes by skipping.
        // SAFETY: plain FFI.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "creating a BPF map needs root: run as root");
        let map = hash(4096);
        let fd = map.fd().as_fd();
        assert_eq!(lookup_hash::<u64, u64>(fd, 8).unwrap(), Some(Vec::new()));
        let keys: Vec<u64> = (0..3000u64).map(|k| k * 7919 + 3).collect();
        let values: Vec<u64> = keys.iter().map(|k| !k).collect();
        update(fd, &keys, &values).unwrap();
        let want: BTreeMap<u64, u64> = keys.iter().copied().zip(values).collect();
        for per_call in [1, 3, 1024, 5000] {
            let got = lookup_hash::<u64, u64>(fd, per_call).unwrap().unwrap();
            assert_eq!(got.len(), want.len(), "{per_call} a call: each entry once");
            let got: BTreeMap<u64, u64> = got.into_iter().collect();
            assert_eq!(got, want, "{per_call} a call");
        }
    }
}
