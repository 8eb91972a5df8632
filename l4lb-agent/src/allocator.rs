//! The agent's allocator: glibc's malloc, one arena for every thread, and
//! freed blocks of 128 KB or more returned to the OS at once.
//!
//! A full sync at 10,000 apps x 5 tasks peaks ~11 MB lower this way than
//! with mimalloc (the agent's allocator until then), for the same CPU time
//! (BENCHMARKS.md, "Measurements behind choices in the code"): the decode
//! thread, the runtime's workers and the apply share one arena's free
//! blocks instead of each keeping its own partly used pages.

/// Sets malloc's options; call first in `main`, before any thread starts.
/// False if the C library refused one (the defaults then stay).
pub fn tune() -> bool {
    // Fixed thresholds also turn off glibc's dynamic ones, which rise to
    // the largest block freed (up to 32 MB): a decode's big buffers would
    // then stay in the heap after they are freed.
    const RETURN_AT: libc::c_int = 128 << 10;
    let options = [
        (libc::M_ARENA_MAX, 1),
        (libc::M_MMAP_THRESHOLD, RETURN_AT),
        (libc::M_TRIM_THRESHOLD, RETURN_AT),
    ];
    // SAFETY: mallopt only sets malloc's parameters.
    options
        .iter()
        .all(|&(option, value)| unsafe { libc::mallopt(option, value) } == 1)
}

/// Returns the heap's free pages to the OS (`malloc_trim`): the thresholds
/// above only return the heap's top, so a freed read's pages in the middle
/// would stay mapped until malloc reuses them.
pub fn release_free_pages() {
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe { libc::malloc_trim(0) };
}
