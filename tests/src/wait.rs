//! Bounded polling for the kernel tests: every wait ends, and a wait that
//! runs out says what it waited for and what it saw last.
use std::{
    thread,
    time::{Duration, Instant},
};

/// How often a condition is checked again.
const STEP: Duration = Duration::from_millis(50);

/// Calls `check` until it gives `Ok`; after `bound` panics naming `what`
/// and the last `Err` (what was seen instead).
pub fn until<T>(what: &str, bound: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out after {bound:?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => thread::sleep(STEP),
        }
    }
}
