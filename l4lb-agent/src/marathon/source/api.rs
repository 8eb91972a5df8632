//! What the source asks of Marathon, and the two reads it makes: a full
//! read (apps, then pods) and a targeted read of the ids events named.
use std::{
    collections::{BTreeSet, HashSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use super::super::{
    client::{FetchError, MarathonClient},
    decode::{AppSet, OneApp},
    events::MarathonEvents,
};

pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the source needs from Marathon; [`MarathonClient`] in production, a
/// scripted fake in tests (so the loop runs on a paused clock).
pub trait MarathonApi: Send + Sync + 'static {
    /// `/v2/apps?embed=apps.tasks`, decoded into `set` in place; true if
    /// anything changed.
    fn fetch_apps(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send;
    /// `/v2/apps/{id}?embed=app.tasks`, decoded; None: the app is gone.
    fn fetch_app(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send;
    /// `/v2/pods/::status`, decoded into `set`'s pods; true if anything
    /// changed (a Marathon without pods: none).
    fn fetch_pods(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send;
    /// `/v2/pods/{id}::status`, decoded; None: no such pod.
    fn fetch_pod(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send;
    /// A fresh `/v2/events` subscription.
    fn events(&self) -> impl Future<Output = Result<MarathonEvents, FetchError>> + Send;
}

impl MarathonApi for MarathonClient {
    fn fetch_apps(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send {
        MarathonClient::refresh_app_set(self, set)
    }
    fn fetch_app(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
        MarathonClient::fetch_app(self, id)
    }
    fn fetch_pods(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send {
        MarathonClient::refresh_pods(self, set)
    }
    fn fetch_pod(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
        MarathonClient::fetch_pod(self, id)
    }
    fn events(&self) -> impl Future<Output = Result<MarathonEvents, FetchError>> + Send {
        MarathonClient::events(self)
    }
}

/// One id's targeted read: an app, a pod, or neither any more.
pub(super) enum OneRead {
    App(OneApp),
    Pod(OneApp),
    Gone,
}

/// A read's answer.
pub(super) enum Fetched {
    /// The shared set was refreshed; true if anything changed.
    All(bool),
    Apps(Vec<(String, OneRead)>),
}

/// Apps, then pods, decoded into `set` in place: the read fails if either
/// does, so no table is ever built from half the cluster.
pub(super) fn full_read<A: MarathonApi>(
    api: Arc<A>,
    set: Arc<Mutex<AppSet>>,
) -> BoxFuture<Result<Fetched, FetchError>> {
    Box::pin(async move {
        let apps_changed = api.fetch_apps(set.clone()).await?;
        let pods_changed = api.fetch_pods(set).await?;
        Ok(Fetched::All(apps_changed | pods_changed))
    })
}

/// Each of `ids`, side by side; those in `pods` are asked as pods first.
pub(super) fn targeted_read<A: MarathonApi>(
    api: Arc<A>,
    ids: BTreeSet<String>,
    pods: HashSet<String>,
) -> BoxFuture<Result<Fetched, FetchError>> {
    Box::pin(async move {
        let reads = ids.iter().map(|id| read_one(&*api, id, pods.contains(id)));
        let got = futures_util::future::try_join_all(reads).await?;
        Ok(Fetched::Apps(ids.into_iter().zip(got).collect()))
    })
}

/// Reads `id` as what the last reads knew it as (a pod, else an app), then,
/// if Marathon has no such thing, as the other: apps and pods share ids,
/// and an id may change sides between full reads.
async fn read_one<A: MarathonApi>(
    api: &A,
    id: &str,
    pod_first: bool,
) -> Result<OneRead, FetchError> {
    if pod_first {
        if let Some(p) = api.fetch_pod(id).await? {
            return Ok(OneRead::Pod(p));
        }
        return Ok(api.fetch_app(id).await?.map_or(OneRead::Gone, OneRead::App));
    }
    if let Some(a) = api.fetch_app(id).await? {
        return Ok(OneRead::App(a));
    }
    Ok(api.fetch_pod(id).await?.map_or(OneRead::Gone, OneRead::Pod))
}
