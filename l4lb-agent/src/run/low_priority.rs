//! A thread that yields the CPU until released: the packet programs'
//! verification when no packet interface waits for it. From spawn to the
//! first table serving, both cores are busy (the read, decode, plan, map
//! writes, the maps' creation, the socket hooks' verification); the packet
//! programs are the one job there that serving does not need, so their
//! thread runs at the lowest priority (nice 19) until the table serves, or
//! a bounded time has passed (a source that never answers must not leave
//! them starved on a busy node).
use std::sync::{Arc, Mutex};

use tracing::debug;

/// The nice value of a yielding thread (the lowest priority of `SCHED_OTHER`).
const LOWEST: libc::c_int = 19;

/// Shared by the thread that yields and whoever releases it.
#[derive(Clone, Default)]
pub struct LowPriority(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// The lowered thread and the nice value it had; None before it lowered
    /// itself and after the release.
    lowered: Option<(libc::pid_t, libc::c_int)>,
    released: bool,
}

impl LowPriority {
    /// Lowers the calling thread to the lowest priority, unless it was
    /// released already.
    pub fn lower_this_thread(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.released || s.lowered.is_some() {
            return;
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let Some(was) = nice_of(tid) else {
            return;
        };
        if set_nice(tid, LOWEST.max(was)) {
            s.lowered = Some((tid, was));
        }
    }

    /// Gives the thread its priority back (idempotent); a thread that has
    /// not lowered itself yet will not.
    pub fn release(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.released = true;
        if let Some((tid, was)) = s.lowered.take() {
            // Raising a priority needs CAP_SYS_NICE (the agent runs as
            // root); without it the thread finishes at the low one.
            set_nice(tid, was);
        }
    }
}

/// A thread's nice value (None: unreadable).
fn nice_of(tid: libc::pid_t) -> Option<libc::c_int> {
    // getpriority returns -1 both as a value and as an error: errno decides.
    // SAFETY: errno is this thread's; getpriority has no preconditions.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        (*libc::__errno_location() == 0).then_some(nice)
    }
}

/// Sets one thread's nice value (Linux: PRIO_PROCESS with a thread id
/// applies to that thread alone); false if the kernel refused.
fn set_nice(tid: libc::pid_t, nice: libc::c_int) -> bool {
    // SAFETY: setpriority has no memory preconditions.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        debug!(
            tid,
            nice,
            "setpriority: {}",
            std::io::Error::last_os_error()
        );
    }
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_nice() -> libc::c_int {
        // SAFETY: gettid has no preconditions.
        nice_of(unsafe { libc::gettid() }).expect("own nice value")
    }

    /// The thread runs at nice 19 once lowered and at its own nice value
    /// again after the release, which also holds off a later lowering.
    #[test]
    fn a_lowered_thread_gets_its_priority_back_and_stays_so() {
        std::thread::spawn(|| {
            let before = this_nice();
            let low = LowPriority::default();
            low.lower_this_thread();
            assert_eq!(this_nice(), LOWEST);
            low.release();
            if this_nice() != before {
                // Without CAP_SYS_NICE the kernel refuses to raise it back.
                assert_eq!(this_nice(), LOWEST, "not root: still the lowest");
                return;
            }
            low.lower_this_thread();
            assert_eq!(this_nice(), before, "released: not lowered again");
        })
        .join()
        .unwrap();
    }

    /// Released before the thread came to lower itself: it never does.
    #[test]
    fn a_release_before_the_lowering_wins() {
        std::thread::spawn(|| {
            let before = this_nice();
            let low = LowPriority::default();
            low.release();
            low.lower_this_thread();
            assert_eq!(this_nice(), before);
        })
        .join()
        .unwrap();
    }
}
