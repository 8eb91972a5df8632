//! Futures for the loop's `select!`, one per kind of wake-up: each waits on
//! something the loop may not have, and never resolves while it has none.
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::{sync::watch, time::Instant};

use super::{
    super::{
        client::FetchError,
        events::{EventError, MarathonEvent, MarathonEvents},
    },
    Inflight,
    api::{BoxFuture, Fetched},
};
use crate::hosts::HostTable;

/// Waits for the read in flight. The caller empties the slot once it has
/// resolved.
pub(super) async fn poll_inflight(slot: &mut Option<Inflight>) -> Result<Fetched, FetchError> {
    match slot {
        Some(i) => i.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Same for the connection attempt.
pub(super) async fn poll_boxed<T>(slot: &mut Option<BoxFuture<T>>) -> T {
    match slot {
        Some(f) => f.as_mut().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn next_event(
    s: &mut Option<MarathonEvents>,
) -> Option<Result<MarathonEvent, EventError>> {
    match s {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// A new host table was published (never, without a resolver).
pub(super) async fn host_table_changed(rx: &mut Option<watch::Receiver<Arc<HostTable>>>) {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                *rx = None; // the resolver is gone: nothing more will change
            }
        }
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
