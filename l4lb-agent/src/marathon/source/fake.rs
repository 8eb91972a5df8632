//! A scripted Marathon for the loop's tests: answers from queues, optional
//! delays, and a record of what was asked and when (on a paused clock).
use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::stream;
use tokio::{sync::mpsc, time::Instant};
use url::Url;

use super::{
    super::{
        client::FetchError,
        decode::{AppSet, OneApp},
        events::{EventError, MarathonEvent, MarathonEvents},
    },
    MarathonApi,
};

pub(super) const GOOD: &str =
    include_str!("../../../../l4lb-core/tests/fixtures/marathon/apps_redis_host.json");
pub(super) type EventTx = mpsc::UnboundedSender<Result<MarathonEvent, EventError>>;

#[derive(Default)]
pub(super) struct Fake {
    /// `/v2/apps` answers in order (Err = HTTP status); GOOD once empty.
    pub(super) answers: Mutex<VecDeque<Result<&'static str, u16>>>,
    pub(super) fetch_delay: Duration,
    pub(super) fetched_at: Mutex<Vec<Instant>>,
    /// `/v2/apps/{id}` answers in order (Ok(None) = 404, Err = HTTP
    /// status); 404 once empty.
    pub(super) app_answers: Mutex<VecDeque<Result<Option<&'static str>, u16>>>,
    /// Ids asked for by `fetch_app`, in order.
    pub(super) app_reads: Mutex<Vec<String>>,
    /// `/v2/pods/::status` answers in order (Err = HTTP status; 404 =
    /// no pods); `[]` once empty.
    pub(super) pods_answers: Mutex<VecDeque<Result<&'static str, u16>>>,
    /// `/v2/pods/{id}::status` answers (as `app_answers`); 404 once empty.
    pub(super) pod_answers: Mutex<VecDeque<Result<Option<&'static str>, u16>>>,
    /// Ids asked for by `fetch_pod`, in order.
    pub(super) pod_reads: Mutex<Vec<String>>,
    /// One per successful subscription; none left = connection refused.
    pub(super) streams: Mutex<VecDeque<mpsc::UnboundedReceiver<Result<MarathonEvent, EventError>>>>,
    pub(super) connected_at: Mutex<Vec<Instant>>,
    /// Time `events()` takes to answer.
    pub(super) connect_delay: Duration,
}

impl Fake {
    pub(super) fn answers(self, a: &[Result<&'static str, u16>]) -> Fake {
        *self.answers.lock().unwrap() = a.iter().copied().collect();
        self
    }
    pub(super) fn stream(&self) -> EventTx {
        let (tx, rx) = mpsc::unbounded_channel();
        self.streams.lock().unwrap().push_back(rx);
        tx
    }
    pub(super) fn fetches(&self) -> Vec<Instant> {
        self.fetched_at.lock().unwrap().clone()
    }
    pub(super) fn app_answers(self, a: &[Result<Option<&'static str>, u16>]) -> Fake {
        *self.app_answers.lock().unwrap() = a.iter().copied().collect();
        self
    }
    pub(super) fn app_reads(&self) -> Vec<String> {
        self.app_reads.lock().unwrap().clone()
    }
    pub(super) fn pods_answers(self, a: &[Result<&'static str, u16>]) -> Fake {
        *self.pods_answers.lock().unwrap() = a.iter().copied().collect();
        self
    }
    pub(super) fn pod_answers(self, a: &[Result<Option<&'static str>, u16>]) -> Fake {
        *self.pod_answers.lock().unwrap() = a.iter().copied().collect();
        self
    }
    pub(super) fn pod_reads(&self) -> Vec<String> {
        self.pod_reads.lock().unwrap().clone()
    }
}

fn status(code: u16) -> FetchError {
    FetchError::Status {
        url: fake_url(),
        status: reqwest::StatusCode::from_u16(code).unwrap(),
        body: String::new(),
    }
}

fn fake_url() -> Url {
    Url::parse("http://fake/").unwrap()
}

impl MarathonApi for Fake {
    fn fetch_apps(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send {
        self.fetched_at.lock().unwrap().push(Instant::now());
        let answer = self.answers.lock().unwrap().pop_front().unwrap_or(Ok(GOOD));
        let delay = self.fetch_delay;
        async move {
            tokio::time::sleep(delay).await;
            let body = answer.map_err(status)?;
            let mut set = set.lock().unwrap();
            set.refresh_from_slice(body.as_bytes())
                .map_err(|source| FetchError::Decode {
                    url: fake_url(),
                    source: Box::new(source),
                })
        }
    }

    fn fetch_app(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
        self.app_reads.lock().unwrap().push(id.to_owned());
        let answer = self
            .app_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(None));
        let delay = self.fetch_delay;
        let id = id.to_owned();
        async move {
            tokio::time::sleep(delay).await;
            match answer.map_err(status)? {
                None => Ok(None),
                Some(body) => crate::marathon::decode::decode_one_app(body.as_bytes(), &id)
                    .map(Some)
                    .map_err(|source| FetchError::Decode {
                        url: fake_url(),
                        source: Box::new(source),
                    }),
            }
        }
    }

    fn fetch_pods(
        &self,
        set: Arc<Mutex<AppSet>>,
    ) -> impl Future<Output = Result<bool, FetchError>> + Send {
        let answer = self
            .pods_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok("[]"));
        async move {
            let mut set = set.lock().unwrap();
            match answer {
                Err(404) => Ok(set.clear_pods()),
                Err(code) => Err(status(code)),
                Ok(body) => set
                    .refresh_pods_from_slice(body.as_bytes())
                    .map_err(|source| FetchError::Decode {
                        url: fake_url(),
                        source: Box::new(source),
                    }),
            }
        }
    }

    fn fetch_pod(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<OneApp>, FetchError>> + Send {
        self.pod_reads.lock().unwrap().push(id.to_owned());
        let answer = self
            .pod_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(None));
        let delay = self.fetch_delay;
        let id = id.to_owned();
        async move {
            tokio::time::sleep(delay).await;
            match answer.map_err(status)? {
                None => Ok(None),
                Some(body) => crate::marathon::decode::decode_one_pod(body.as_bytes(), &id)
                    .map(Some)
                    .map_err(|source| FetchError::Decode {
                        url: fake_url(),
                        source: Box::new(source),
                    }),
            }
        }
    }

    fn events(&self) -> impl Future<Output = Result<MarathonEvents, FetchError>> + Send {
        self.connected_at.lock().unwrap().push(Instant::now());
        let rx = self.streams.lock().unwrap().pop_front();
        let delay = self.connect_delay;
        async move {
            tokio::time::sleep(delay).await;
            let rx = rx.ok_or(FetchError::Connect {
                url: fake_url(),
                reason: "refused".into(),
            })?;
            let s = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
            Ok(Box::pin(s) as MarathonEvents)
        }
    }
}
