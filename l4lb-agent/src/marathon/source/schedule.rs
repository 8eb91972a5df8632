//! When the source reads and what: the clocks, why a read happens, what it
//! covers, and how reasons waiting for one are merged. Pure: no I/O, and
//! time only as the [`Instant`]s it is given.
use std::{collections::BTreeSet, time::Duration};

use rand::Rng;
use tokio::time::Instant;

use super::super::{client, events::MarathonEvent};

/// First reconnect / retry delay ceiling; doubles per failure.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Largest reconnect / retry delay ceiling.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Default [`Timing::first_read_wait`].
pub const FIRST_READ_WAIT: Duration = Duration::from_secs(2);
/// More apps than this named by one debounce window: one full read instead.
pub const MAX_TARGETED_APPS: usize = 16;
/// The first catalog waits this long at most for agent host names to
/// resolve (later ones never wait: they are rebuilt when answers come).
pub const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(2);
/// Answers about agent host names are gathered this long into one rebuild.
pub const HOSTS_DEBOUNCE: Duration = Duration::from_millis(100);

/// The source loop's clocks (the HTTP timeouts live in [`ClientConfig`]).
///
/// [`ClientConfig`]: super::super::client::ClientConfig
#[derive(Clone, Debug)]
pub struct Timing {
    /// The longest time between full re-reads.
    pub resync: Duration,
    /// Fraction (0..=0.5) of `resync` each period may be cut by, drawn
    /// anew each time: the agents of a fleet, started together, drift
    /// apart instead of re-reading Marathon in one stampede.
    pub resync_jitter: f64,
    /// Window before a full re-read.
    pub debounce: Duration,
    /// Window before a re-read of only the apps events named: a quarter of
    /// `debounce` (they are cheap; the window only gathers one burst).
    pub app_debounce: Duration,
    /// How long the first read waits for the event stream to attach (so
    /// that nothing can change unseen between the two, and no second full
    /// read is needed); past it the read goes ahead and re-reads once the
    /// stream attaches.
    pub first_read_wait: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Timing {
    pub fn new(resync: Duration, debounce: Duration) -> Timing {
        Timing {
            resync,
            resync_jitter: 0.0,
            debounce,
            app_debounce: debounce / 4,
            first_read_wait: FIRST_READ_WAIT,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
        }
    }
}

impl Timing {
    /// The time to the next full re-read: uniform in
    /// `[resync·(1 − jitter), resync]`, so `resync` stays the staleness bound.
    pub fn next_resync(&self) -> Duration {
        let j = self.resync_jitter.clamp(0.0, 0.5);
        if j == 0.0 {
            return self.resync;
        }
        let cut = rand::rng().random_range(0.0..=j);
        self.resync.mul_f64(1.0 - cut)
    }
}

/// Why a read happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// First read at start.
    Initial,
    /// Periodic resync.
    Resync,
    /// The event stream (re)attached: events may have been missed meanwhile.
    Reconnect,
    /// The operator asked (SIGHUP, the systemd unit's reload).
    Sighup,
    /// An agent host name resolved or moved: the catalog was rebuilt from
    /// what was last read, without reading Marathon.
    Hosts,
    /// One or more events. `received_at` is the EARLIEST event's arrival, so
    /// `received_at.elapsed()` once the maps are written is the event → maps latency.
    Event {
        event_type: String,
        received_at: std::time::Instant,
        /// Events served by this one read.
        events: usize,
    },
}

impl Trigger {
    /// Short name for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Resync => "resync",
            Trigger::Reconnect => "reconnect",
            Trigger::Sighup => "SIGHUP",
            Trigger::Hosts => "hosts",
            Trigger::Event { .. } => "event",
        }
    }

    /// Two pending reasons for one read: events win (their latency is
    /// reported), keeping the earliest arrival and the total count.
    pub(super) fn merge(self, other: Trigger) -> Trigger {
        use Trigger::*;
        match (self, other) {
            (
                Event {
                    event_type: t1,
                    received_at: r1,
                    events: n1,
                },
                Event {
                    event_type: t2,
                    received_at: r2,
                    events: n2,
                },
            ) => {
                let (event_type, received_at) = if r2 < r1 { (t2, r2) } else { (t1, r1) };
                Event {
                    event_type,
                    received_at,
                    events: n1 + n2,
                }
            }
            (e @ Event { .. }, _) | (_, e @ Event { .. }) => e,
            (Initial, _) | (_, Initial) => Initial,
            (Sighup, _) | (_, Sighup) => Sighup,
            (Reconnect, _) | (_, Reconnect) => Reconnect,
            (Resync, _) | (_, Resync) => Resync,
            (Hosts, Hosts) => Hosts,
        }
    }
}

/// Exponential backoff with full jitter: the n-th delay is uniform in
/// `[0, min(cap, base·2ⁿ)]`, so agents restarted together do not reconnect
/// in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// Upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; raises the ceiling for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What a read covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    /// Only these apps (ids checked by [`client::is_app_id`]).
    Apps(BTreeSet<String>),
}

impl Scope {
    fn merge(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::Apps(mut a), Scope::Apps(b)) => {
                a.extend(b);
                if a.len() > MAX_TARGETED_APPS {
                    Scope::All
                } else {
                    Scope::Apps(a)
                }
            }
            _ => Scope::All,
        }
    }

    /// The apps (or pods) an event is about, if it names them and every
    /// name is one we may ask for; otherwise a full read.
    pub(super) fn of_event(ev: &MarathonEvent) -> Scope {
        let d = &ev.data;
        let ids: Vec<&serde_json::Value> = match ev.event_type.as_str() {
            // `uri` is the request's: `/v2/pods/{id}` for an update or a
            // delete; a create (`/v2/pods`) names no pod.
            "pod_created_event" | "pod_updated_event" | "pod_deleted_event" => {
                return match d.get("uri").and_then(|u| u.as_str()).and_then(pod_of_uri) {
                    Some(id) if client::is_app_id(id) => {
                        Scope::Apps(BTreeSet::from([id.to_owned()]))
                    }
                    _ => Scope::All,
                };
            }
            "status_update_event" | "health_status_changed_event" | "app_terminated_event" => {
                d.get("appId").into_iter().collect()
            }
            "instance_changed_event" | "instance_health_changed_event" => {
                d.get("runSpecId").into_iter().collect()
            }
            "api_post_event" => d
                .get("appDefinition")
                .and_then(|a| a.get("id"))
                .into_iter()
                .collect(),
            // `plan.steps[].actions[].app` (or `.pod`): every app and pod
            // the deployment touched.
            "deployment_success" => d
                .pointer("/plan/steps")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .filter_map(|step| step.get("actions")?.as_array())
                .flatten()
                .filter_map(|a| a.get("app").or_else(|| a.get("pod")))
                .collect(),
            _ => Vec::new(),
        };
        let mut apps = BTreeSet::new();
        for id in ids {
            match id.as_str() {
                Some(id) if client::is_app_id(id) => {
                    apps.insert(id.to_owned());
                }
                _ => return Scope::All,
            }
        }
        if apps.is_empty() || apps.len() > MAX_TARGETED_APPS {
            return Scope::All;
        }
        Scope::Apps(apps)
    }
}

/// The pod id in a pod event's `uri` (`/v2/pods/shop/web`, maybe with a
/// `::` suffix).
fn pod_of_uri(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("/v2/pods")?;
    let id = rest
        .split("::")
        .next()
        .unwrap_or(rest)
        .trim_end_matches('/');
    (!id.is_empty()).then_some(id)
}

/// When a read is due, by what it covers.
#[derive(Clone, Copy, Debug)]
pub(super) struct Due {
    apps: Instant,
    all: Instant,
}

impl Due {
    pub(super) fn at(t: Instant) -> Due {
        Due { apps: t, all: t }
    }

    /// The debounce windows from `now`.
    pub(super) fn window(now: Instant, timing: &Timing) -> Due {
        Due {
            apps: now + timing.app_debounce,
            all: now + timing.debounce,
        }
    }

    fn min(self, o: Due) -> Due {
        Due {
            apps: self.apps.min(o.apps),
            all: self.all.min(o.all),
        }
    }
}

/// Reasons waiting for a read.
pub(super) struct Pending {
    pub(super) trigger: Trigger,
    pub(super) scope: Scope,
    pub(super) due: Due,
    /// Retrying after a failure: new events must not pull the retry earlier.
    pub(super) backing_off: bool,
}

impl Pending {
    pub(super) fn add(slot: &mut Option<Pending>, trigger: Trigger, scope: Scope, due: Due) {
        match slot {
            None => {
                *slot = Some(Pending {
                    trigger,
                    scope,
                    due,
                    backing_off: false,
                })
            }
            Some(p) => {
                p.trigger = std::mem::replace(&mut p.trigger, Trigger::Resync).merge(trigger);
                p.scope = std::mem::replace(&mut p.scope, Scope::All).merge(scope);
                if !p.backing_off {
                    // A fixed window from the first signal, so a steady
                    // trickle of events cannot postpone the read forever.
                    p.due = p.due.min(due);
                }
            }
        }
    }

    /// A read of only some apps waits the short window, a full one the long.
    pub(super) fn due_at(&self) -> Instant {
        match self.scope {
            Scope::Apps(_) => self.due.apps,
            Scope::All => self.due.all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marathon::events;

    #[test]
    fn pod_events_name_their_pod() {
        let scope = |t: &str, d: serde_json::Value| {
            Scope::of_event(&MarathonEvent {
                event_type: t.into(),
                data: d,
                received_at: std::time::Instant::now(),
            })
        };
        let one = |id: &str| Scope::Apps(BTreeSet::from([id.to_owned()]));
        assert_eq!(
            scope(
                "pod_deleted_event",
                serde_json::json!({"uri": "/v2/pods/shop/api"})
            ),
            one("/shop/api")
        );
        assert_eq!(
            scope(
                "pod_updated_event",
                serde_json::json!({"uri": "/v2/pods/web::status"})
            ),
            one("/web")
        );
        assert_eq!(
            scope("pod_created_event", serde_json::json!({"uri": "/v2/pods"})),
            Scope::All
        );
        assert_eq!(
            scope(
                "pod_updated_event",
                serde_json::json!({"uri": "/v2/pods/A"})
            ),
            Scope::All
        );
        assert_eq!(
            scope("pod_updated_event", serde_json::json!({})),
            Scope::All
        );
        let plan = serde_json::json!({"plan": {"steps": [{"actions": [
            {"action": "StartPod", "pod": "/p"}, {"action": "ScaleApplication", "app": "/a"}]}]}});
        assert_eq!(
            scope("deployment_success", plan),
            Scope::Apps(BTreeSet::from(["/a".to_owned(), "/p".to_owned()]))
        );
        for t in [
            "pod_created_event",
            "pod_updated_event",
            "pod_deleted_event",
        ] {
            assert!(events::triggers_reread(t), "{t}");
        }
    }

    #[test]
    fn resync_jitter_stays_within_the_period_and_spreads() {
        let mut t = Timing::new(Duration::from_secs(60), Duration::from_millis(20));
        assert_eq!(t.next_resync(), Duration::from_secs(60));
        t.resync_jitter = 0.2;
        let draws: Vec<Duration> = (0..1000).map(|_| t.next_resync()).collect();
        let lo = Duration::from_secs(48);
        assert!(
            draws.iter().all(|d| *d >= lo && *d <= t.resync),
            "{draws:?}"
        );
        let (min, max) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        // 1000 uniform draws over 12 s: the extremes sit near both ends.
        assert!(*min < Duration::from_secs(49) && *max > Duration::from_secs(59));
    }

    #[test]
    fn backoff_bounds() {
        let mut b = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        let want_ms = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
        for ms in want_ms {
            assert_eq!(b.ceiling(), Duration::from_millis(ms));
            b.next_delay();
        }
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), BACKOFF_CAP, "no overflow after many failures");
        b.reset();
        assert_eq!(b.ceiling(), BACKOFF_BASE);

        // Full jitter: every delay within [0, ceiling], and spread over it.
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let samples: Vec<_> = (0..2000).map(|_| b.next_delay()).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(samples.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(900)));
    }

    #[test]
    fn trigger_merge_keeps_the_earliest_event() {
        let t0 = std::time::Instant::now();
        let t1 = t0 + Duration::from_millis(5);
        let e = |t: &str, at, n| Trigger::Event {
            event_type: t.into(),
            received_at: at,
            events: n,
        };
        assert_eq!(e("b", t1, 2).merge(e("a", t0, 1)), e("a", t0, 3));
        assert_eq!(Trigger::Resync.merge(e("a", t0, 1)), e("a", t0, 1));
        assert_eq!(
            Trigger::Resync.merge(Trigger::Reconnect),
            Trigger::Reconnect
        );
        assert_eq!(Trigger::Initial.merge(Trigger::Resync), Trigger::Initial);
    }
}
