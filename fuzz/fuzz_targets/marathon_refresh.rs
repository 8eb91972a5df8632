//! The in-place refresh of the Marathon source's app set
//! (`marathon::decode::AppSet::refresh_from`, what a full read does), fed an
//! arbitrary sequence of `/v2/apps` bodies (the input split at 0xff bytes,
//! which JSON text never holds), each also cut short at a point the input
//! picks. Checks:
//! - a refresh that succeeds leaves the set equal to a fresh decode of that
//!   body, whatever the set held before;
//! - a refresh that fails (cut short, not JSON, not an app list) leaves the
//!   set exactly as it was, and the next good one reports a change;
//! - the reader path (the body as it arrives in pieces) and the slice path
//!   agree;
//! - after every refresh, good or failed, the catalog kept up to date change
//!   by change (`update_catalog`, what an event does) equals the one built
//!   whole from the same set (`catalog`).
#![no_main]

use std::io::Read;

use l4lb_fuzz::{
    hosts::HostTable,
    marathon::decode::{AppSet, decode_apps},
    model::desired_state,
    naming::VipAllocator,
};
use libfuzzer_sys::fuzz_target;

/// Hands the body out `step` bytes at a time, as the HTTP body arrives.
struct Trickle<'a> {
    rest: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

fn refresh(set: &mut AppSet, body: &[u8], step: usize) {
    let before = set.clone();
    let mut by_slice = set.clone();
    let sliced = by_slice.refresh_from_slice(body);
    let read = set.refresh_from(Trickle { rest: body, step });
    assert_eq!(read.is_ok(), sliced.is_ok(), "reader and slice disagree");
    match read {
        Ok(_) => {
            let fresh = decode_apps(body).expect("decoded in place, decodes fresh");
            assert!(
                set.same_content(&fresh),
                "refreshed set differs from a fresh decode"
            );
            assert!(by_slice.same_content(&fresh));
        }
        Err(_) => {
            assert!(
                set.same_content(&before),
                "a failed refresh changed the set"
            );
            assert!(by_slice.same_content(&before));
            // Dirty now: the next complete read reports a change.
            let mut again = set.clone();
            if let Ok(changed) = again.refresh_from_slice(br#"{"apps":[]}"#) {
                assert!(changed, "a read after a failure reported no change");
            }
        }
    }
}

/// The two allocators each path names VIPs with, step by step.
struct Catalogs {
    kept: VipAllocator,
    whole: VipAllocator,
}

impl Catalogs {
    fn check(&mut self, set: &mut AppSet) {
        let kept = set.update_catalog(&mut self.kept, &HostTable::default());
        let whole = set.catalog(&mut self.whole);
        assert_eq!(kept.is_ok(), whole.is_ok(), "kept and whole builds disagree");
        if let (Ok(mut kept), Ok(whole)) = (kept, whole) {
            if let Some(services) = kept.services.take() {
                kept.catalog.services = desired_state(&services);
            }
            assert_eq!(kept, whole, "the kept catalog differs from a full build");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut set = AppSet::default();
    let mut cats = Catalogs {
        kept: VipAllocator::new(),
        whole: VipAllocator::new(),
    };
    for (i, body) in data.split(|&b| b == 0xff).take(8).enumerate() {
        let step = 1 + body.len() % 61;
        // Every other body first arrives cut short, then whole.
        if i % 2 == 1 && !body.is_empty() {
            let cut = &body[..body.len() * 2 / 3];
            refresh(&mut set, cut, step);
            cats.check(&mut set);
        }
        refresh(&mut set, body, step);
        cats.check(&mut set);
    }
});
