//! What the fake Marathon served, by kind of request: the fleet benchmark's
//! measure of what N agents cost the control plane (requests and body
//! bytes; headers are not counted, they are small next to the bodies).
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// The kinds of request an agent makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `GET /v2/apps` (the full list).
    AppList,
    /// `GET /v2/apps/{id}` (one app).
    App,
    /// `/v2/pods…`.
    Pods,
    /// `GET /v2/events` (bytes: every event and keepalive written to it).
    Events,
    /// Anything else (`/v2/leader`, `/ping`, `/v2/info`, errors).
    Other,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::AppList, "appList"),
    (Kind::App, "app"),
    (Kind::Pods, "pods"),
    (Kind::Events, "events"),
    (Kind::Other, "other"),
];

impl Kind {
    /// The kind of a request for `path`.
    pub fn of(path: &str) -> Kind {
        let p = path.trim_end_matches('/');
        match p {
            "/v2/apps" => Kind::AppList,
            "/v2/events" => Kind::Events,
            _ if p.starts_with("/v2/apps/") => Kind::App,
            _ if p == "/v2/pods" || p.starts_with("/v2/pods/") => Kind::Pods,
            _ => Kind::Other,
        }
    }

    fn index(self) -> usize {
        KINDS.iter().position(|(k, _)| *k == self).expect("listed")
    }
}

/// Request and byte counters per [`Kind`], over every instance.
#[derive(Default)]
pub struct Served {
    requests: [AtomicU64; 5],
    bytes: [AtomicU64; 5],
}

impl Served {
    pub fn request(&self, kind: Kind) {
        self.requests[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes(&self, kind: Kind, n: u64) {
        self.bytes[kind.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// `{"appList": {"requests": R, "bytes": B}, …}`.
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, name) in KINDS {
            let i = k.index();
            m.insert(
                name.to_string(),
                json!({
                    "requests": self.requests[i].load(Ordering::Relaxed),
                    "bytes": self.bytes[i].load(Ordering::Relaxed),
                }),
            );
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_counts() {
        assert_eq!(Kind::of("/v2/apps"), Kind::AppList);
        assert_eq!(Kind::of("/v2/apps/"), Kind::AppList);
        assert_eq!(Kind::of("/v2/apps/a/b"), Kind::App);
        assert_eq!(Kind::of("/v2/events"), Kind::Events);
        assert_eq!(Kind::of("/v2/pods/::status"), Kind::Pods);
        assert_eq!(Kind::of("/v2/leader"), Kind::Other);
        let s = Served::default();
        s.request(Kind::App);
        s.bytes(Kind::App, 10);
        s.bytes(Kind::App, 5);
        let j = s.to_json();
        assert_eq!(j["app"], json!({"requests": 1, "bytes": 15}));
        assert_eq!(j["appList"], json!({"requests": 0, "bytes": 0}));
    }
}
