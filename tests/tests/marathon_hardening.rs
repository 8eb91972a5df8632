//! A hostile or broken Marathon against the real agent: a redirect
//! to another host gets no credentials, endless bodies and event streams cost
//! bounded memory and no spin, and after each fault the table is intact and
//! events flow again. SIGHUP re-reads in Marathon mode.
use std::{
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{Agent, FakeMarathon, Fault, Sandbox, TaskSpec, redis_app, require_root};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(20);
/// The DaemonSet's memory limit.
const RSS_LIMIT_KB: u64 = 256 * 1024;
const TOKEN: &str = "s3cret-t0ken";

fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// User + system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn backends(agent: &Agent) -> usize {
    agent.vips_json().unwrap()[0]["backends"]
        .as_array()
        .unwrap()
        .len()
}

fn metric(sb: &Sandbox, name: &str) -> u64 {
    let (code, m) = sb.agent_http("/metrics");
    assert_eq!(code, "200", "{m}");
    let line = m
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in:\n{m}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn instance(m: &FakeMarathon, i: usize) -> Value {
    m.state().unwrap()["instances"][i].clone()
}

/// A one-instance Marathon requiring a token, /web with 3 tasks, an agent
/// following it (resync every second) with its table in place.
fn setup(tag: &str) -> (Sandbox, FakeMarathon, Agent) {
    setup_with(tag, &[])
}

/// [`setup`] with more agent flags.
fn setup_with(tag: &str, extra: &[&str]) -> (Sandbox, FakeMarathon, Agent) {
    let mut sb = Sandbox::new(tag).unwrap();
    for (id, ip) in [
        ("a", "127.0.0.2"),
        ("b", "127.0.0.3"),
        ("c", "127.0.0.4"),
        ("d", "127.0.0.5"),
    ] {
        sb.spawn_testsrv(id, &[&format!("{ip}:7000")], &[]).unwrap();
    }
    let tasks: Vec<TaskSpec> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|h| TaskSpec::new(h, 7000))
        .collect();
    let apps = json!({"apps": [redis_app("/web", "/web:80", &tasks)]});
    let m = FakeMarathon::start_with_args(&mut sb, 1, apps, &["--require-token", TOKEN]).unwrap();
    let auth = sb.workdir().join("marathon-auth");
    std::fs::write(&auth, format!("token={TOKEN}\n")).unwrap();
    let auth = auth.to_str().unwrap().to_owned();
    let url = m.url(0);
    let mut args = vec![
        "--marathon",
        &url,
        "--marathon-auth-file",
        &auth,
        "--marathon-resync-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    let agent = Agent::start_with_args(&mut sb, "", &args).unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    agent.wait_table("3 backends", BOUND, |v| {
        v[0]["backends"].as_array().is_some_and(|b| b.len() == 3)
    });
    (sb, m, agent)
}

/// After a fault: the event stream attaches again and an event reaches the
/// table (a 4th task), within BOUND.
fn events_flow_again(m: &FakeMarathon, agent: &Agent) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while instance(m, 0)["sseStreams"] != 1 {
        assert!(
            Instant::now() < deadline,
            "no event stream again:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let t = m.scale("/web", &TaskSpec::new("127.0.0.5", 7000)).unwrap();
    agent.wait_table("4 backends", BOUND, |v| {
        v[0]["backends"].as_array().is_some_and(|b| b.len() == 4)
    });
    m.kill_now(t["id"].as_str().unwrap()).unwrap();
    agent.wait_table("3 backends", BOUND, |v| {
        v[0]["backends"].as_array().is_some_and(|b| b.len() == 3)
    });
}

/// Regression: one 302 to another host sent `Authorization: token=…` there on
/// every read. Now the redirect is refused: the other host sees nothing, the
/// table stays, and the configured Marathon serves again once it stops.
#[test]
fn a_redirect_to_another_host_gets_no_credentials() {
    require_root();
    let (mut sb, m, agent) = setup("mredir");
    let other = FakeMarathon::start(&mut sb, 1, json!({"apps": []})).unwrap();
    m.fault(0, Fault::RedirectTo { url: other.url(0) }).unwrap();
    m.fault(0, Fault::DisconnectEvents).unwrap();
    thread::sleep(Duration::from_secs(4));
    let at_other = instance(&other, 0);
    assert_eq!(
        at_other["withAuth"], 0,
        "credentials sent to another host: {at_other}"
    );
    assert_eq!(
        at_other["requests"], 0,
        "the other host was asked: {at_other}"
    );
    assert_eq!(backends(&agent), 3, "the table changed");
    assert!(agent.log().contains("redirect refused"), "{}", agent.log());
    assert!(metric(&sb, "l4lb_marathon_redirects_refused_total") >= 1);
    m.clear_faults().unwrap();
    events_flow_again(&m, &agent);
    assert_eq!(instance(&other, 0)["requests"], 0);
}

/// Regression: an HTTP 500 with an endless body took the agent to 2 GB RSS
/// in 5 s. Now error bodies are read 64 KiB at most.
#[test]
fn an_endless_error_body_costs_no_memory() {
    require_root();
    let (_sb, m, agent) = setup("mendless");
    let before = status_kb(agent.pid(), "VmRSS:");
    m.fault(0, Fault::EndlessBody { code: 500 }).unwrap();
    m.fault(0, Fault::DisconnectEvents).unwrap();
    thread::sleep(Duration::from_secs(5));
    let hwm = status_kb(agent.pid(), "VmHWM:");
    eprintln!("endless 500 body: RSS {before} kB before, peak {hwm} kB");
    assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB");
    assert_eq!(backends(&agent), 3, "the table changed");
    assert!(agent.log().contains("HTTP 500"), "{}", agent.log());
    m.clear_faults().unwrap();
    events_flow_again(&m, &agent);
}

/// Regression: `data:` lines without a blank line grew to 2.2 GB, and one
/// endless line held a core at 100 % while events stopped. Now both end the
/// stream at the cap, the agent reconnects, and events flow again.
#[test]
fn endless_event_streams_are_cut_and_events_flow_again() {
    require_root();
    // A 1 MiB cap (the flag; 8 MiB by default) keeps each cut cheap in a debug build.
    let (sb, m, agent) = setup_with("msse", &["--marathon-max-event-bytes", "1048576"]);
    for (fault, what) in [
        (Fault::EndlessEventData, "event longer than 1048576"),
        (Fault::EndlessEventLine, "line longer than 1048576"),
    ] {
        m.fault(0, fault).unwrap();
        m.fault(0, Fault::DisconnectEvents).unwrap();
        // The stream reconnects after its backoff (up to 30 s), to the fault.
        let deadline = Instant::now() + Duration::from_secs(45);
        while !agent.log().contains(what) {
            assert!(Instant::now() < deadline, "no {what:?}:\n{}", agent.log());
            thread::sleep(Duration::from_millis(100));
        }
        let (t0, cpu0) = (Instant::now(), cpu_ticks(agent.pid()));
        thread::sleep(Duration::from_secs(3));
        let ticks = cpu_ticks(agent.pid()) - cpu0;
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let busy = ticks as f64 / hz / t0.elapsed().as_secs_f64();
        let hwm = status_kb(agent.pid(), "VmHWM:");
        eprintln!(
            "{what}: CPU {:.0} % of one core, peak RSS {hwm} kB",
            busy * 100.0
        );
        assert!(hwm < RSS_LIMIT_KB, "peak RSS {hwm} kB");
        assert!(
            busy < 0.75,
            "the agent spun: {:.0} % of a core",
            busy * 100.0
        );
        assert_eq!(backends(&agent), 3, "the table changed");
        m.clear_faults().unwrap();
        events_flow_again(&m, &agent);
    }
    assert!(metric(&sb, "l4lb_marathon_reads_over_cap_total") >= 2);
}

/// Failed full reads of a big cluster (10,000 apps of 5 tasks, every body cut
/// in half) keep the table and cost no lasting memory: between the failing
/// retries RSS is back near where it was. (The in-place refresh now puts back
/// what a failed read replaced: `decode` unit tests and the
/// `marathon_refresh` fuzz target check the set itself.)
#[test]
fn a_failed_big_read_frees_what_it_decoded() {
    require_root();
    let (_sb, m, agent) = setup("mfreed");
    let base = status_kb(agent.pid(), "VmRSS:");
    // 10,000 new apps of 5 tasks, served cut in half: every full read fails.
    let apps: Vec<Value> = (0..10_000)
        .map(|i| {
            let tasks: Vec<TaskSpec> = (0..5)
                .map(|t| TaskSpec::new(&format!("127.1.{}.{}", i / 250 % 250, t + 1), 7000))
                .collect();
            redis_app(&format!("/big/app-{i}"), &format!("/big-{i}:80"), &tasks)
        })
        .collect();
    m.fault(0, Fault::Truncate).unwrap();
    let mut all = m.apps().unwrap()["apps"].as_array().unwrap().clone();
    all.extend(apps);
    m.put_apps(json!({ "apps": all })).unwrap();
    m.fault(0, Fault::DisconnectEvents).unwrap();
    // Reads fail and back off; the lowest RSS seen is between two reads.
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent
        .log()
        .matches("read failed, keeping the last table")
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "reads did not fail:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let mut low = u64::MAX;
    for _ in 0..50 {
        low = low.min(status_kb(agent.pid(), "VmRSS:"));
        thread::sleep(Duration::from_millis(100));
    }
    let hwm = status_kb(agent.pid(), "VmHWM:");
    eprintln!(
        "failed 10,000-app reads: RSS {base} kB before, {low} kB at the lowest after, peak {hwm} kB"
    );
    assert_eq!(backends(&agent), 3, "the table changed");
    assert!(
        low < base + 8 * 1024,
        "{low} kB kept after failed reads (was {base} kB)"
    );
    m.clear_faults().unwrap();
}

/// Regression: SIGHUP killed the agent in Marathon mode (the shipped unit
/// reloads with it). Now it re-reads every app.
#[test]
fn sighup_rereads_marathon() {
    require_root();
    let (_sb, _m, mut agent) = setup("mhup");
    let n = agent.log().matches("trigger=\"SIGHUP\"").count();
    agent.sighup();
    agent.wait_log("marathon: SIGHUP", "SIGHUP handled", BOUND);
    let deadline = Instant::now() + BOUND;
    while agent.log().matches("trigger=\"SIGHUP\"").count() == n {
        assert!(
            Instant::now() < deadline,
            "no SIGHUP re-read:\n{}",
            agent.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(agent.is_running(), "SIGHUP stopped the agent");
    assert_eq!(backends(&agent), 3);
}
