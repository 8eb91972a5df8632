//! A BPF_F_MMAPABLE array reached through a few mapped windows at a time,
//! not one mapping of the whole array: the kernel maps every page of a
//! mapping when it is made, so the backends array (1.5 MB at 65,536 ids) and
//! the service generations (1 MB) held whole would be resident for the
//! agent's life. A write maps the window of its element and keeps the last
//! [`OPEN`] windows mapped (a full sync's ids run in order, window after
//! window; an event's few ids fall in one or two); a read of every element
//! maps each window only while it reads it.
use std::{marker::PhantomData, os::fd::AsFd};

use aya::maps::{Map, MapData, MapError};

use super::{Mapping, array_of};

/// Bytes of the array one window spans (16 pages).
const WINDOW_BYTES: usize = 64 << 10;
/// Windows kept mapped for writes; the oldest goes when another is needed.
const OPEN: usize = 2;

pub(in crate::datapath) struct Windows<T> {
    map: MapData,
    pub(in crate::datapath) len: usize,
    /// (window number, its mapping), the most recently mapped last.
    open: Vec<(usize, Mapping)>,
    _elem: PhantomData<T>,
}

impl<T: Copy> Windows<T> {
    pub(in crate::datapath) fn new(map: Map, name: &str) -> Result<Windows<T>, MapError> {
        let (map, len) = array_of::<T>(map, name)?;
        let w = Windows {
            map,
            len,
            open: Vec::new(),
            _elem: PhantomData,
        };
        if len > 0 {
            // An array that cannot be mapped fails here, not at a write.
            w.window(0)?;
        }
        Ok(w)
    }

    /// Elements per window.
    fn per_window() -> usize {
        (WINDOW_BYTES / size_of::<T>()).max(1)
    }

    /// Maps window `n` (elements `n * per_window ..`, to the array's end at
    /// most); with how many elements it holds.
    fn window(&self, n: usize) -> Result<(Mapping, usize), MapError> {
        let per = Self::per_window();
        let first = n * per;
        let end = (first + per).min(self.len);
        let (lo, hi) = (first * size_of::<T>(), end * size_of::<T>());
        Ok((Mapping::pages(self.map.fd().as_fd(), lo, hi)?, end - first))
    }

    /// Element `i` to write, its window mapped if it is not; None past the
    /// array's end.
    pub(in crate::datapath) fn get_mut(&mut self, i: usize) -> Result<Option<&mut T>, MapError> {
        if i >= self.len {
            return Ok(None);
        }
        let per = Self::per_window();
        let n = i / per;
        let k = match self.open.iter().position(|(w, _)| *w == n) {
            Some(k) => k,
            None => {
                let (mapping, _) = self.window(n)?;
                if self.open.len() == OPEN {
                    self.open.remove(0);
                }
                self.open.push((n, mapping));
                self.open.len() - 1
            }
        };
        let start = self.open[k].1.start().cast::<T>();
        // SAFETY: window n's mapping starts at element n * per (page
        // aligned plus a multiple of the 8-byte stride: aligned for T) and
        // holds element i (< len, < (n + 1) * per); it lives in self, which
        // the returned borrow holds.
        Ok(Some(unsafe { &mut *start.add(i - n * per) }))
    }

    /// Calls `f` with each element's index and value, in order, each window
    /// mapped only while it is read (the CLI's, the adopter's and the
    /// metrics' reads, beside a running writer: each element is read with
    /// one volatile load of the whole value).
    pub(in crate::datapath) fn for_each(
        &self,
        mut f: impl FnMut(usize, T),
    ) -> Result<(), MapError> {
        let per = Self::per_window();
        for n in 0..self.len.div_ceil(per) {
            let (mapping, count) = self.window(n)?;
            let at = mapping.start().cast::<T>().cast_const();
            for k in 0..count {
                // SAFETY: element k of the window, inside its mapping.
                f(n * per + k, unsafe { std::ptr::read_volatile(at.add(k)) });
            }
        }
        Ok(())
    }
}

// SAFETY: the mappings are owned by the handle; elements are written only
// through &mut self.
unsafe impl<T: Send> Send for Windows<T> {}
// SAFETY: as above; a shared reference only reads, through mappings of its
// own (`for_each`).
unsafe impl<T: Sync> Sync for Windows<T> {}

#[cfg(test)]
mod tests {
    use aya::maps::{Array, Map, MapData};

    use super::*;

    /// An element of 16 bytes, as the service generations' are.
    type Pair = [u64; 2];

    /// A BPF_F_MMAPABLE array of `len` pairs (needs root, as the agent).
    fn array(len: u32) -> Map {
        const BPF_MAP_TYPE_ARRAY: u32 = 2;
        const BPF_F_MMAPABLE: u32 = 1 << 10;
        let obj = aya_obj::Map::new_from_params(BPF_MAP_TYPE_ARRAY, 4, 16, len, BPF_F_MMAPABLE);
        let map = MapData::create(obj, "l4lb_test_win", None).expect("creating the array (root?)");
        Map::from_map_data(map).unwrap()
    }

    /// Writes land at their index across more windows than stay mapped
    /// (forward, then backward, so each revisits an unmapped window), and
    /// read back the same through the windows and through the syscall.
    #[test]
    fn writes_across_windows_read_back_at_their_index() {
        // A kernel test fails without root, never passes by skipping.
        // SAFETY: plain FFI.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "creating a BPF map needs root: run as root");
        let per = Windows::<Pair>::per_window();
        let len = (per * (OPEN + 3) + 7) as u32;
        let mut w: Windows<Pair> = Windows::new(array(len), "test").unwrap();
        assert_eq!(w.len, len as usize);
        let value = |i: usize| [i as u64 * 3 + 1, !(i as u64)];
        let last = w.len - 1;
        let expect = |i: usize| match i.is_multiple_of(5) || (last - i).is_multiple_of(7) {
            true => value(i),
            false => [0, 0],
        };
        let order = (0..w.len).step_by(5).chain((0..w.len).rev().step_by(7));
        for i in order {
            *w.get_mut(i).unwrap().unwrap() = value(i);
        }
        assert!(w.get_mut(w.len).unwrap().is_none(), "past the end");
        assert!(w.open.len() <= OPEN);
        let mut seen = 0;
        w.for_each(|i, v| {
            assert_eq!(v, expect(i), "element {i}");
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, w.len);
        let fd = w.map.fd().as_fd().try_clone_to_owned().unwrap();
        let read: Array<MapData, Pair> = Map::from_map_data(MapData::from_fd(fd).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        for i in [0, 1, per - 1, per, per * 2 + 5, last - 7, last] {
            assert_eq!(read.get(&(i as u32), 0).unwrap(), expect(i), "element {i}");
        }
    }
}
