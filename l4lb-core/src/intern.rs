//! Shared copies of strings that many records repeat (a task's app id,
//! agent id and framework name: 50,000 tasks name ~10,000 apps, a few
//! hundred agents and one framework), so each distinct string is held once.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

/// foldhash, seeded per pool, as the plan's and the zones' indexes: SipHash
/// was 4 % of a full `/v2/apps` read's instructions, 3 lookups a task.
type Strings = HashSet<Arc<str>, foldhash::fast::RandomState>;

struct Pool {
    strings: Strings,
    /// Size after the last sweep: the next one runs at twice that.
    swept_at: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Fewest strings before a sweep is worth it.
const MIN_SWEEP: usize = 1024;

/// The shared copy of `s`. Strings no record holds any more are dropped
/// from the pool when it has doubled since the last sweep, so it stays
/// within twice what the records name.
pub fn intern(s: &str) -> Arc<str> {
    let mut guard = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let pool = guard.get_or_insert_with(|| Pool {
        strings: Strings::default(),
        swept_at: 0,
    });
    if let Some(found) = pool.strings.get(s) {
        return found.clone();
    }
    if pool.strings.len() >= (2 * pool.swept_at).max(MIN_SWEEP) {
        pool.strings.retain(|k| Arc::strong_count(k) > 1);
        pool.swept_at = pool.strings.len();
    }
    let shared: Arc<str> = Arc::from(s);
    pool.strings.insert(shared.clone());
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern("/intern-test/app");
        let b = intern(&String::from("/intern-test/app"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "/intern-test/app");
        assert!(!Arc::ptr_eq(&a, &intern("/intern-test/other")));
    }

    #[test]
    fn strings_nobody_holds_are_swept() {
        // Enough unheld strings to pass a sweep threshold, then one held.
        let held = intern("intern-test-held");
        for i in 0..4 * MIN_SWEEP {
            drop(intern(&format!("intern-test-dropped-{i}")));
        }
        let pool = POOL.lock().unwrap();
        let strings = &pool.as_ref().unwrap().strings;
        assert!(strings.len() < 3 * MIN_SWEEP, "{} kept", strings.len());
        assert!(strings.contains("intern-test-held"));
        drop(held);
    }
}
