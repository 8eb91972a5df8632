//! The loop against a scripted fake, on a paused clock.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use super::{
    super::events::{EventError, MarathonEvent},
    FIRST_READ_WAIT, FIRST_RESOLVE_WAIT, MAX_TARGETED_APPS, SourceLoop, SourceStats, Timing,
    Trigger, Update,
    fake::{EventTx, Fake, GOOD},
    run_with,
};
use crate::marathon::parse::Keep;
use crate::{hosts::resolver::Resolver, naming::VipAllocator};

struct Run {
    fake: Arc<Fake>,
    rx: mpsc::Receiver<Update>,
    stats: Arc<SourceStats>,
    task: tokio::task::JoinHandle<()>,
    reread: Arc<Notify>,
}

fn timing() -> Timing {
    Timing::new(Duration::from_secs(600), Duration::from_millis(20))
}

/// One app on an agent known by name (bridge: its only backend is the agent's).
const ON_NAMED_AGENT: &str = r#"{"apps": [{"id": "/web", "networks": [{"mode": "container/bridge"}],
    "container": {"portMappings": [{"containerPort": 80, "labels": {"VIP_0": "/web:80"}}]},
    "tasks": [{"id": "web.1", "host": "agent-1.example", "ports": [31001],
               "state": "TASK_RUNNING"}]}]}"#;

/// Answers `agent-1.example` after `delay` with `addr` (changeable).
struct SlowDns {
    delay: Duration,
    addr: Arc<Mutex<&'static str>>,
}

impl crate::hosts::resolver::Lookup for SlowDns {
    async fn lookup(&self, _: &str) -> Result<(Vec<std::net::IpAddr>, Duration), String> {
        tokio::time::sleep(self.delay).await;
        let a = *self.addr.lock().unwrap();
        Ok((vec![a.parse().unwrap()], Duration::from_secs(30)))
    }
}

fn web_backends(u: &Update) -> Vec<String> {
    u.full_catalog()
        .services
        .services
        .values()
        .flat_map(|s| s.backends.keys().map(ToString::to_string))
        .collect()
}

fn start_with_dns(fake: Arc<Fake>, dns: SlowDns) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel(8);
    let hosts = Arc::new(Resolver::spawn(dns));
    tokio::spawn(run_with(
        fake,
        timing(),
        VipAllocator::new(),
        tx,
        Arc::default(),
        Arc::default(),
        Some(hosts),
    ));
    rx
}

#[tokio::test(start_paused = true)]
async fn the_first_table_waits_briefly_for_agent_names() {
    let fake = Arc::new(Fake::default().answers(&[Ok(ON_NAMED_AGENT)]));
    let _stream = fake.stream();
    let addr = Arc::new(Mutex::new("198.18.0.9"));
    let dns = SlowDns {
        delay: Duration::from_millis(300),
        addr: addr.clone(),
    };
    let mut rx = start_with_dns(fake.clone(), dns);
    let first = rx.recv().await.unwrap();
    assert_eq!(first.trigger, Trigger::Initial);
    assert_eq!(web_backends(&first), ["198.18.0.9:31001"]);

    // The name moves at its next refresh: the table follows, with no
    // read of Marathon.
    *addr.lock().unwrap() = "198.18.0.10";
    let moved = tokio::time::timeout(Duration::from_secs(40), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.trigger, Trigger::Hosts);
    assert_eq!(web_backends(&moved), ["198.18.0.10:31001"]);
    assert_eq!(fake.fetches().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_resolver_never_holds_the_table_for_long() {
    let fake = Arc::new(Fake::default().answers(&[Ok(ON_NAMED_AGENT)]));
    let _stream = fake.stream();
    let dns = SlowDns {
        delay: Duration::from_secs(10),
        addr: Arc::new(Mutex::new("198.18.0.9")),
    };
    let t0 = Instant::now();
    let mut rx = start_with_dns(fake.clone(), dns);
    let first = rx.recv().await.unwrap();
    assert!(t0.elapsed() <= FIRST_RESOLVE_WAIT + Duration::from_millis(100));
    assert!(web_backends(&first).is_empty());
    // The answer comes later: one rebuild, no read.
    let later = rx.recv().await.unwrap();
    assert_eq!(later.trigger, Trigger::Hosts);
    assert_eq!(web_backends(&later), ["198.18.0.9:31001"]);
    assert_eq!(fake.fetches().len(), 1);
}

fn start(fake: Arc<Fake>, timing: Timing) -> Run {
    start_keeping(fake, timing, Keep::Records)
}

/// [`start`], the loop's set keeping what `keep` says of each task.
fn start_keeping(fake: Arc<Fake>, timing: Timing, keep: Keep) -> Run {
    let (tx, rx) = mpsc::channel(8);
    let stats = Arc::new(SourceStats::default());
    let reread = Arc::new(Notify::new());
    let source = SourceLoop::new(
        fake.clone(),
        timing,
        VipAllocator::new(),
        tx,
        stats.clone(),
        reread.clone(),
        None,
    );
    let task = tokio::spawn(source.keeping(keep).run());
    Run {
        fake,
        rx,
        stats,
        task,
        reread,
    }
}

impl Run {
    async fn next(&mut self) -> Update {
        tokio::time::timeout(Duration::from_secs(3600), self.rx.recv())
            .await
            .expect("an update within an hour")
            .expect("source alive")
    }
    /// Stream attached, then the initial read (no second one).
    async fn settle(&mut self) {
        assert_eq!(self.next().await.trigger, Trigger::Initial);
        assert_eq!(self.fake.connected_at.lock().unwrap().len(), 1);
    }
    async fn quiet_for(&mut self, d: Duration) {
        tokio::time::sleep(d).await;
        assert!(self.rx.try_recv().is_err(), "no update expected");
    }
}

/// The loop on `fake` with one event stream, past its first read.
async fn settled(fake: Fake) -> (Run, EventTx) {
    let fake = Arc::new(fake);
    let events = fake.stream();
    let mut run = start(fake, timing());
    run.settle().await;
    (run, events)
}

fn ev(t: &str) -> Result<MarathonEvent, EventError> {
    Ok(MarathonEvent {
        event_type: t.into(),
        data: serde_json::json!({}),
        received_at: std::time::Instant::now(),
    })
}

/// Regression: SIGHUP killed the agent in Marathon mode. Now it re-reads
/// everything at once, even while a failed read is backing off.
#[tokio::test(start_paused = true)]
async fn sighup_rereads_everything_at_once() {
    let (mut run, _events) = settled(Fake::default()).await;
    let t0 = Instant::now();
    run.reread.notify_one();
    let u = run.next().await;
    assert_eq!(u.trigger, Trigger::Sighup);
    assert_eq!(u.trigger.label(), "SIGHUP");
    assert_eq!(u.apps_read, None, "a full read");
    assert_eq!(run.fake.fetches().len(), 2);
    assert_eq!(run.fake.fetches()[1], t0, "no debounce");
    // While a failed read backs off: the SIGHUP read goes now.
    run.fake
        .answers
        .lock()
        .unwrap()
        .extend([Err(500), Err(500)]);
    run.reread.notify_one();
    while run.stats.snapshot().fetch_failed < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let t1 = Instant::now();
    run.reread.notify_one();
    while run.stats.snapshot().fetch_failed < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(run.fake.fetches()[3], t1);
    assert_eq!(run.next().await.trigger, Trigger::Sighup);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_events_makes_one_read_after_the_debounce() {
    let (mut run, events) = settled(Fake::default()).await;
    assert_eq!(run.fake.fetches().len(), 1);

    let t0 = Instant::now();
    let burst: Vec<_> = [
        "status_update_event",
        "instance_changed_event",
        "health_status_changed_event",
        "instance_health_changed_event",
        "deployment_success",
    ]
    .iter()
    .map(|t| ev(t).unwrap())
    .collect();
    let earliest = burst[0].received_at;
    for e in burst {
        events.send(Ok(e)).unwrap();
    }
    let u = run.next().await;
    assert_eq!(
        u.trigger,
        Trigger::Event {
            event_type: "status_update_event".into(),
            received_at: earliest,
            events: 5
        }
    );
    let fetches = run.fake.fetches();
    assert_eq!(fetches.len(), 2);
    assert_eq!(fetches[1] - t0, Duration::from_millis(20));
    run.quiet_for(Duration::from_secs(5)).await;
    assert_eq!(run.fake.fetches().len(), 2);
    assert_eq!(run.stats.snapshot().events_received, 5);
}

#[tokio::test(start_paused = true)]
async fn the_debounce_window_is_fixed_from_the_first_event() {
    let (mut run, events) = settled(Fake::default()).await;
    let t0 = Instant::now();
    events.send(ev("status_update_event")).unwrap();
    tokio::time::sleep(Duration::from_millis(15)).await;
    events.send(ev("status_update_event")).unwrap();
    let u = run.next().await;
    assert!(matches!(u.trigger, Trigger::Event { events: 2, .. }));
    tokio::time::sleep_until(t0 + Duration::from_millis(30)).await;
    events.send(ev("app_terminated_event")).unwrap();
    let u = run.next().await;
    assert!(
        matches!(u.trigger, Trigger::Event { events: 1, ref event_type, .. } if event_type == "app_terminated_event")
    );
    let f = run.fake.fetches();
    assert_eq!(f[1] - t0, Duration::from_millis(20));
    assert_eq!(f[2] - t0, Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn an_event_during_a_read_causes_another_read() {
    let fake = Arc::new(Fake {
        fetch_delay: Duration::from_millis(100),
        ..Fake::default()
    });
    let events = fake.stream();
    let mut run = start(fake, timing());
    run.settle().await;
    let t0 = Instant::now();
    events.send(ev("status_update_event")).unwrap();
    // The read starts at +20 ms and answers at +120 ms; this event comes in between.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = ev("health_status_changed_event").unwrap();
    let second_at = second.received_at;
    events.send(Ok(second)).unwrap();
    let u = run.next().await;
    assert!(
        matches!(u.trigger, Trigger::Event { events: 1, ref event_type, .. } if event_type == "status_update_event")
    );
    let u = run.next().await;
    assert_eq!(
        u.trigger,
        Trigger::Event {
            event_type: "health_status_changed_event".into(),
            received_at: second_at,
            events: 1
        }
    );
    let f = run.fake.fetches();
    assert_eq!(f.len(), 3);
    assert_eq!(
        f[2] - t0,
        Duration::from_millis(120),
        "starts once the first read is done"
    );
    assert_eq!(u.took, Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn failed_reads_send_nothing_and_are_retried_with_backoff() {
    // Initial OK; the post-attach read gets a 500, then garbage, then OK.
    let fake = Arc::new(Fake::default().answers(&[Ok(GOOD), Err(500), Ok("<html>"), Ok(GOOD)]));
    let events = fake.stream();
    let mut run = start(fake, timing());
    assert_eq!(run.next().await.trigger, Trigger::Initial);
    while run.stats.snapshot().fetch_failed < 1 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // An event while backing off joins the retry but does not hurry it.
    events.send(ev("status_update_event")).unwrap();
    let u = run.next().await;
    assert!(
        matches!(u.trigger, Trigger::Event { events: 1, .. }),
        "{:?}",
        u.trigger
    );
    let s = run.stats.snapshot();
    assert_eq!((s.fetch_ok, s.fetch_failed), (2, 2));
    let f = run.fake.fetches();
    assert_eq!(f.len(), 4);
    assert!(f[2] - f[1] <= Duration::from_millis(250));
    assert!(f[3] - f[2] <= Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn the_stream_attaches_first_and_the_first_read_retries_until_it_succeeds() {
    let fake = Arc::new(Fake::default().answers(&[Err(503), Err(502), Ok("{"), Ok(GOOD)]));
    let _events = fake.stream();
    let t0 = Instant::now();
    let mut run = start(fake, timing());
    let u = run.next().await;
    assert_eq!(u.trigger, Trigger::Initial);
    assert_eq!(run.stats.snapshot().fetch_failed, 3);
    let f = run.fake.fetches();
    assert!(f[3] - t0 <= Duration::from_millis(250 + 500 + 1000));
    let connected = run.fake.connected_at.lock().unwrap().clone();
    assert_eq!(connected.len(), 1);
    assert!(connected[0] <= f[0], "subscribed before the first read");
    // Nothing could change unseen between the two: no second full read.
    run.quiet_for(Duration::from_secs(5)).await;
    assert_eq!(run.fake.fetches().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_slow_stream_holds_the_first_read_only_so_long_then_costs_a_reread() {
    let fake = Arc::new(Fake {
        connect_delay: FIRST_READ_WAIT * 3,
        ..Fake::default()
    });
    let _events = fake.stream();
    let t0 = Instant::now();
    let mut run = start(fake, timing());
    assert_eq!(run.next().await.trigger, Trigger::Initial);
    assert_eq!(run.fake.fetches()[0] - t0, FIRST_READ_WAIT);
    // The stream attached after the read: what happened in between is re-read.
    assert_eq!(run.next().await.trigger, Trigger::Reconnect);
    assert_eq!(run.fake.fetches().len(), 2);
    assert!(run.fake.fetches()[1] - t0 >= FIRST_READ_WAIT * 3);
}

#[tokio::test(start_paused = true)]
async fn a_refused_stream_does_not_hold_the_first_read() {
    // No stream queued: every connection attempt is refused.
    let fake = Arc::new(Fake::default());
    let t0 = Instant::now();
    let mut run = start(fake, timing());
    assert_eq!(run.next().await.trigger, Trigger::Initial);
    assert!(run.fake.fetches()[0] - t0 < Duration::from_millis(1));
    // Attached later (after a refusal): re-read.
    while run.fake.connected_at.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _events = run.fake.stream();
    assert_eq!(run.next().await.trigger, Trigger::Reconnect);
}

#[tokio::test(start_paused = true)]
async fn resync_runs_periodically_without_events() {
    let fake = Arc::new(Fake::default());
    let _events = fake.stream();
    let mut run = start(
        fake,
        Timing::new(Duration::from_secs(60), Duration::from_millis(20)),
    );
    run.settle().await;
    let after_settle = *run.fake.fetches().last().unwrap();
    for _ in 0..2 {
        assert_eq!(run.next().await.trigger, Trigger::Resync);
    }
    let f = run.fake.fetches();
    assert_eq!(f[1] - after_settle, Duration::from_secs(60));
    assert_eq!(f[2] - f[1], Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn a_lost_stream_is_reconnected_with_backoff_and_reread() {
    let fake = Arc::new(Fake::default());
    let first = fake.stream();
    let mut run = start(fake, timing());
    run.settle().await;
    // Marathon closes the stream (e.g. leader abdicated); the next two
    // connection attempts are refused, the third works.
    let lost_at = Instant::now();
    drop(first);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let second = {
        // Queue the working stream only after two refusals.
        while run.fake.connected_at.lock().unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        run.fake.stream()
    };
    let u = run.next().await;
    assert_eq!(u.trigger, Trigger::Reconnect);
    let c = run.fake.connected_at.lock().unwrap().clone();
    assert_eq!(c.len(), 4);
    assert!(c[1] - lost_at <= Duration::from_millis(250));
    assert!(c[2] - c[1] <= Duration::from_millis(500));
    assert!(c[3] - c[2] <= Duration::from_millis(1000));
    assert_eq!(run.stats.snapshot().reconnects, 3);
    second.send(ev("status_update_event")).unwrap();
    assert!(matches!(run.next().await.trigger, Trigger::Event { .. }));
}

#[tokio::test(start_paused = true)]
async fn attach_and_unknown_events_do_not_reread_but_malformed_ones_do() {
    let (mut run, events) = settled(Fake::default()).await;
    events.send(ev("event_stream_attached")).unwrap();
    events.send(ev("framework_message_event")).unwrap();
    run.quiet_for(Duration::from_secs(1)).await;
    assert_eq!(run.fake.fetches().len(), 1);
    let at = std::time::Instant::now();
    events
        .send(Err(EventError::Malformed {
            event_type: "status_update_event".into(),
            received_at: at,
            reason: "EOF".into(),
        }))
        .unwrap();
    let u = run.next().await;
    assert!(matches!(u.trigger, Trigger::Event { received_at, .. } if received_at == at));
    let s = run.stats.snapshot();
    assert_eq!((s.events_received, s.events_malformed), (3, 1));
}

fn app_ev(t: &str, data: serde_json::Value) -> Result<MarathonEvent, EventError> {
    Ok(MarathonEvent {
        event_type: t.into(),
        data,
        received_at: std::time::Instant::now(),
    })
}

/// GOOD's `/redis` with its first task gone, as `/v2/apps/redis` answers.
fn redis_minus_one_task() -> &'static str {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    let mut app = v["apps"][0].take();
    app["tasks"].as_array_mut().unwrap().remove(0);
    Box::leak(
        serde_json::json!({ "app": app })
            .to_string()
            .into_boxed_str(),
    )
}

fn backends(u: &Update) -> usize {
    u.full_catalog()
        .services
        .services
        .values()
        .map(|s| s.backends.len())
        .sum()
}

/// In every mode: only the records differ (none kept without a reader,
/// packed for the discovery API alone).
#[tokio::test(start_paused = true)]
async fn an_event_naming_an_app_rereads_only_that_app() {
    for keep in [Keep::Records, Keep::Packed, Keep::ServicesOnly] {
        event_rereads_only_its_app(keep).await;
    }
}

/// The records an update carries (unpacked, if packed); packed records
/// only in the mode that packs.
fn held(u: &Update) -> usize {
    if !u.catalog.packed.is_empty() {
        assert!(u.catalog.tasks.is_empty(), "packed records only");
    }
    let (unpacked, skipped) = u.catalog.unpacked();
    assert_eq!(skipped, 0);
    unpacked.tasks.len()
}

async fn event_rereads_only_its_app(keep: Keep) {
    let records = |n: usize| if keep.records() { n } else { 0 };
    let fake = Arc::new(Fake::default().app_answers(&[Ok(Some(redis_minus_one_task())), Ok(None)]));
    let events = fake.stream();
    let mut run = start_keeping(fake, timing(), keep);
    let first = run.next().await;
    assert_eq!(first.trigger, Trigger::Initial);
    assert_eq!(backends(&first), 3);
    assert_eq!(held(&first), records(3));
    assert_eq!(!first.catalog.packed.is_empty(), keep == Keep::Packed);
    assert_eq!(run.fake.connected_at.lock().unwrap().len(), 1);
    let full = run.fake.fetches().len();
    events
        .send(app_ev(
            "status_update_event",
            serde_json::json!({"appId": "/redis", "taskStatus": "TASK_KILLED"}),
        ))
        .unwrap();
    let u = run.next().await;
    assert_eq!(u.apps_read, Some(1));
    assert_eq!(backends(&u), 2, "one of three tasks left");
    assert_eq!(held(&u), records(2));
    // Health events name the app as runSpecId / appId too; 404 = gone.
    events
        .send(app_ev(
            "instance_health_changed_event",
            serde_json::json!({"runSpecId": "/redis", "healthy": false}),
        ))
        .unwrap();
    let u = run.next().await;
    assert_eq!(u.apps_read, Some(1));
    assert!(
        u.full_catalog().services.services.is_empty(),
        "the app was the only one declaring them"
    );
    assert_eq!(held(&u), 0);
    assert_eq!(run.fake.app_reads(), ["/redis", "/redis"]);
    assert_eq!(run.fake.fetches().len(), full, "no full read");
    assert_eq!(run.stats.snapshot().targeted, 2);
}

const PODS: &str = include_str!("../../../../l4lb-core/tests/fixtures/marathon/pods_vips.json");

/// PODS's `/cache` with only its running instance, as
/// `/v2/pods/cache::status` answers.
fn cache_one_instance() -> &'static str {
    let v: serde_json::Value = serde_json::from_str(PODS).unwrap();
    let mut pod = v[1].clone();
    pod["instances"].as_array_mut().unwrap().truncate(1);
    Box::leak(pod.to_string().into_boxed_str())
}

fn vips_named(u: &Update, label: &str) -> Vec<usize> {
    u.full_catalog()
        .services
        .services
        .values()
        .filter(|s| s.name.as_deref() == Some(label))
        .map(|s| s.backends.len())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn pods_are_read_with_the_apps_and_pod_events_reread_only_that_pod() {
    let fake = Fake::default()
        .pods_answers(&[Ok(PODS)])
        .pod_answers(&[Ok(Some(cache_one_instance())), Ok(None)]);
    let (mut run, events) = settled(fake).await;
    let full = run.fake.fetches().len();
    events
        .send(app_ev(
            "pod_updated_event",
            serde_json::json!({"uri": "/v2/pods/cache", "clientIp": "10.0.0.9"}),
        ))
        .unwrap();
    let u = run.next().await;
    assert_eq!(u.apps_read, Some(1));
    assert_eq!(
        vips_named(&u, "/cache:6379"),
        [1, 1],
        "udp and tcp, one backend each"
    );
    assert_eq!(vips_named(&u, "/redis:6379").len(), 1, "the apps stay");
    assert_eq!(run.fake.pod_reads(), ["/cache"]);
    assert!(
        run.fake.app_reads().is_empty(),
        "a known pod is read as one"
    );
    // A pod task's status update names the pod as `appId`; 404: gone
    // (and not an app either).
    events
        .send(app_ev(
            "status_update_event",
            serde_json::json!({"appId": "/cache", "taskId": "cache.instance-x.redis",
                               "taskStatus": "TASK_KILLED"}),
        ))
        .unwrap();
    let u = run.next().await;
    assert!(vips_named(&u, "/cache:6379").is_empty());
    assert_eq!(vips_named(&u, "/shop/api:80").len(), 2, "other pods stay");
    assert_eq!(run.fake.pod_reads(), ["/cache", "/cache"]);
    assert_eq!(run.fake.app_reads(), ["/cache"]);
    assert_eq!(run.fake.fetches().len(), full, "no full read");
    // A create names no pod (`uri` is `/v2/pods`): a full read.
    events
        .send(app_ev(
            "pod_created_event",
            serde_json::json!({"uri": "/v2/pods", "clientIp": "10.0.0.9"}),
        ))
        .unwrap();
    let u = run.next().await;
    assert_eq!(u.apps_read, None);
    assert_eq!(run.fake.fetches().len(), full + 1);
}

#[tokio::test(start_paused = true)]
async fn an_unknown_id_is_read_as_an_app_then_as_a_pod() {
    let fake = Fake::default().pod_answers(&[Ok(Some(cache_one_instance()))]);
    let (mut run, events) = settled(fake).await;
    events
        .send(app_ev(
            "instance_changed_event",
            serde_json::json!({"runSpecId": "/cache", "condition": "Running"}),
        ))
        .unwrap();
    let u = run.next().await;
    assert_eq!(u.apps_read, Some(1));
    assert_eq!(vips_named(&u, "/cache:6379"), [1, 1]);
    assert_eq!(run.fake.app_reads(), ["/cache"]);
    assert_eq!(run.fake.pod_reads(), ["/cache"]);
}
#[tokio::test(start_paused = true)]
async fn a_failed_pods_read_fails_the_full_read_and_404_means_no_pods() {
    let fake = Fake::default().pods_answers(&[Err(404), Err(500), Ok(PODS)]);
    let (mut run, _events) = settled(fake).await;
    // The first read: no pods here (404), the apps as usual.
    run.reread.notify_one();
    let u = run.next().await;
    assert_eq!(u.trigger, Trigger::Sighup);
    let s = run.stats.snapshot();
    assert_eq!(
        s.fetch_failed, 1,
        "the pods read failed: no table from the apps alone"
    );
    assert_eq!(vips_named(&u, "/cache:6379"), [2, 2]);
    assert_eq!(vips_named(&u, "/redis:6379").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn app_reads_wait_the_short_window_full_reads_the_long_one() {
    let (mut run, events) = settled(Fake::default()).await;
    let t = timing();
    assert_eq!(t.app_debounce, t.debounce / 4);
    let t0 = Instant::now();
    events
        .send(app_ev(
            "status_update_event",
            serde_json::json!({"appId": "/redis"}),
        ))
        .unwrap();
    assert_eq!(run.next().await.apps_read, Some(1));
    let waited = Instant::now() - t0;
    assert!(
        waited >= t.app_debounce && waited < t.debounce,
        "{waited:?}"
    );
    let t1 = Instant::now();
    events.send(ev("deployment_success")).unwrap();
    assert_eq!(run.next().await.apps_read, None);
    let waited = Instant::now() - t1;
    assert!(
        waited >= t.debounce && waited < t.debounce * 2,
        "{waited:?}"
    );
    // An app event joining a pending full read does not pull it earlier.
    let t2 = Instant::now();
    events.send(ev("deployment_success")).unwrap();
    events
        .send(app_ev(
            "status_update_event",
            serde_json::json!({"appId": "/redis"}),
        ))
        .unwrap();
    assert_eq!(run.next().await.apps_read, None);
    assert!(Instant::now() - t2 >= t.debounce);
}

#[tokio::test(start_paused = true)]
async fn many_apps_or_an_unnamed_or_bad_id_make_a_full_read() {
    let (mut run, events) = settled(Fake::default()).await;
    let full = run.fake.fetches().len();
    for i in 0..=MAX_TARGETED_APPS {
        events
            .send(app_ev(
                "status_update_event",
                serde_json::json!({"appId": format!("/a{i}")}),
            ))
            .unwrap();
    }
    let u = run.next().await;
    assert_eq!(u.apps_read, None);
    assert!(matches!(u.trigger, Trigger::Event { events, .. } if events == MAX_TARGETED_APPS + 1));
    assert_eq!(run.fake.fetches().len(), full + 1);
    assert!(run.fake.app_reads().is_empty());
    // An id that is not a Marathon app id never reaches a URL.
    for id in ["/../v2/leader", "/a?b", "redis", "/A", "/a//b"] {
        events
            .send(app_ev(
                "status_update_event",
                serde_json::json!({"appId": id}),
            ))
            .unwrap();
        assert_eq!(run.next().await.apps_read, None, "{id}");
    }
    // A deployment without a plan that names its apps: everything.
    events.send(ev("deployment_success")).unwrap();
    assert_eq!(run.next().await.apps_read, None);
    assert!(run.fake.app_reads().is_empty());
    // With one: those apps (steps[].actions[].app).
    let plan = serde_json::json!({"plan": {"steps": [
        {"actions": [{"action": "ScaleApplication", "app": "/redis"}]},
        {"actions": [{"action": "StartApplication", "app": "/web"}]}]}});
    events.send(app_ev("deployment_success", plan)).unwrap();
    assert_eq!(run.next().await.apps_read, Some(2));
    assert_eq!(run.fake.app_reads(), ["/redis", "/web"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_app_read_is_retried_as_a_full_read() {
    let (mut run, events) = settled(Fake::default().app_answers(&[Err(503)])).await;
    let full = run.fake.fetches().len();
    events
        .send(app_ev(
            "health_status_changed_event",
            serde_json::json!({"appId": "/redis", "alive": false}),
        ))
        .unwrap();
    let u = run.next().await;
    assert_eq!(u.apps_read, None);
    assert!(matches!(u.trigger, Trigger::Event { .. }));
    assert_eq!(run.fake.app_reads(), ["/redis"]);
    assert_eq!(run.fake.fetches().len(), full + 1);
    assert_eq!(run.stats.snapshot().fetch_failed, 1);
}

#[tokio::test(start_paused = true)]
async fn parser_warnings_are_counted_and_the_update_still_goes_out() {
    const BAD_LABEL: &str = r#"{"apps":[{"id":"/bad","instances":0,"tasks":[],
        "portDefinitions":[{"port":10000,"protocol":"tcp","labels":{"VIP_0":"no-port"}}]}]}"#;
    let want =
        crate::marathon::parse::parse_apps(BAD_LABEL.as_bytes(), &mut VipAllocator::new()).unwrap();
    assert!(!want.warnings.is_empty());
    let fake = Arc::new(Fake::default().answers(&[Ok(BAD_LABEL), Ok(BAD_LABEL)]));
    let _events = fake.stream();
    let mut run = start(fake, timing());
    let u = run.next().await;
    assert_eq!(u.full_catalog(), want.catalog);
    assert_eq!(
        (u.trigger, u.warnings),
        (Trigger::Initial, want.warnings.len())
    );
    // Counted on every read (logged loudly only the first time).
    assert_eq!(run.next().await.warnings, want.warnings.len());
    assert_eq!(
        run.stats.snapshot().warnings,
        2 * want.warnings.len() as u64
    );
}

#[tokio::test(start_paused = true)]
async fn the_source_stops_when_the_receiver_is_dropped() {
    let fake = Arc::new(Fake::default());
    let _events = fake.stream();
    let mut run = start(fake, timing());
    run.settle().await;
    drop(run.rx);
    tokio::time::timeout(Duration::from_secs(1), run.task)
        .await
        .expect("source stopped")
        .unwrap();
}
