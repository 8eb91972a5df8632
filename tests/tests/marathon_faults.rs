//! Marathon misbehaving while traffic flows: outages, restarts and leader
//! switches change nothing in the table and fail no connection; an event storm
//! costs a bounded number of re-reads and bounded memory.
use std::{
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{
    Agent, FakeMarathon, Fault, Sandbox, TaskSpec, probe_bin, redis_app, require_root,
};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(20);

fn revision(agent: &Agent) -> Value {
    let v = agent.vips_json().unwrap();
    v[0]["revision"].clone()
}

fn applies(agent: &Agent) -> usize {
    agent.log().matches("table applied").count()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn setup(tag: &str) -> (Sandbox, FakeMarathon, Agent) {
    let mut sb = Sandbox::new(tag).unwrap();
    for (id, ip) in [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")] {
        sb.spawn_testsrv(id, &[&format!("{ip}:7000")], &[]).unwrap();
    }
    let tasks: Vec<TaskSpec> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|h| TaskSpec::new(h, 7000))
        .collect();
    let m = FakeMarathon::start(
        &mut sb,
        2,
        json!({"apps": [redis_app("/web", "/web:80", &tasks)]}),
    )
    .unwrap();
    let urls = m.urls().join(",");
    let agent = Agent::start_with_args(
        &mut sb,
        "",
        &["--marathon", &urls, "--marathon-resync-secs", "1"],
    )
    .unwrap();
    let v = agent.wait_vips(1, BOUND).unwrap();
    let deadline = Instant::now() + BOUND;
    while agent.vips_json().unwrap()[0]["backends"]
        .as_array()
        .unwrap()
        .len()
        != 3
    {
        assert!(Instant::now() < deadline, "{v}");
        thread::sleep(Duration::from_millis(20));
    }
    (sb, m, agent)
}

#[test]
fn outages_restarts_and_leader_switches_under_load_change_nothing() {
    require_root();
    let (sb, m, agent) = setup("mfaults");
    let vip = agent.vips_json().unwrap()[0]["vip"]
        .as_str()
        .unwrap()
        .to_string();
    let rev = revision(&agent);
    let applied_before = applies(&agent);

    // 200 connections/s for 12 s.
    let load = sb
        .in_cgroup(probe_bin())
        .args(["tcp", "--to", &vip, "-n", "2400", "--interval-ms", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(1));
    // Marathon stopped (both instances refuse), then back.
    m.fault(0, Fault::Down).unwrap();
    m.fault(1, Fault::Down).unwrap();
    thread::sleep(Duration::from_secs(3));
    // Each failed read reaches the agent's loop as an event: counted, the
    // sync marked bad, the table kept.
    let (_, metrics) = sb.agent_http("/metrics");
    let failures = metrics.lines().find_map(|l| {
        l.strip_prefix("l4lb_source_failures_total ")?
            .parse::<f64>()
            .ok()
    });
    assert!(failures.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(metrics.lines().any(|l| l == "l4lb_sync_ok 0"), "{metrics}");
    assert!(agent.log().contains("keeping the previous table"));
    m.clear_faults().unwrap();
    thread::sleep(Duration::from_secs(2));
    // Leader switches back and forth.
    m.set_leader(Some(1)).unwrap();
    thread::sleep(Duration::from_secs(2));
    m.set_leader(Some(0)).unwrap();
    let out = load.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], 0, "connections failed: {v}");
    assert_eq!(v["counts"].as_object().unwrap().len(), 3, "{v}");
    assert_eq!(
        revision(&agent),
        rev,
        "the backend set flapped\nlog:\n{}",
        agent.log()
    );
    // Re-reads happened (resync every second), none of them wrote anything.
    let log = agent.log();
    let writes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("table applied"))
        .skip(applied_before)
        .filter(|l| !l.contains("writes=0"))
        .collect();
    assert!(writes.is_empty(), "re-reads wrote to the maps: {writes:?}");
    // Marathon is back: the next good read (after the retry backoff) marks
    // the sync good again.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (_, metrics) = sb.agent_http("/metrics");
        if metrics.lines().any(|l| l == "l4lb_sync_ok 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_event_storm_is_coalesced_and_memory_stays_bounded() {
    require_root();
    let (_sb, m, agent) = setup("mstorm");
    let reads = |a: &Agent| {
        a.log()
            .lines()
            .filter(|l| l.contains("marathon: apps read"))
            .count()
    };
    let (reads_before, applies_before) = (reads(&agent), applies(&agent));
    let start = Instant::now();
    let event = json!({"eventType": "status_update_event", "appId": "/web", "taskId": "web.instance-x._app.1", "taskStatus": "TASK_RUNNING", "repeat": 10000});
    m.emit(event).unwrap();
    // The storm is signal, not state: let the debounced re-reads settle.
    thread::sleep(Duration::from_secs(3));
    let rereads = reads(&agent) - reads_before;
    eprintln!(
        "10,000 events in {:?} → {rereads} re-reads of /web",
        start.elapsed()
    );
    assert!(
        rereads >= 1,
        "the storm triggered no re-read:\n{}",
        agent.log()
    );
    // One read of the named app per 5 ms window at most, never one per event.
    assert!(rereads <= 200, "10,000 events caused {rereads} re-reads");
    // /web did not change: nothing was written. An event's read that found
    // nothing new builds no table; the test's 1 s resync does (a resync due
    // with an event is one full read, applied under the event's trigger).
    let log = agent.log();
    let after: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("table applied"))
        .skip(applies_before)
        .collect();
    assert!(after.iter().all(|l| l.contains("writes=0")), "{after:#?}");
    assert!(after.len() <= 5, "more tables than resyncs: {after:#?}");
    let hwm = rss_kb(agent.pid());
    eprintln!("agent peak RSS {hwm} kB");
    assert!(hwm < 100 * 1024, "agent peak RSS {hwm} kB over 100 MB");
    assert_eq!(
        agent.vips_json().unwrap()[0]["backends"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
