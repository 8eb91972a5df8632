//! The agent following a (test) Mesos master over the operator API: tasks
//! of Marathon and of an SDK-style framework (`hello-world`, `VIP_0` labels
//! on DiscoveryInfo ports) reachable through their VIPs from the sandbox
//! cgroup and resolvable by name; a TASK_KILLED takes its backend and name
//! away; a stream cut keeps the table and resubscribes.
use std::{thread, time::Duration};

use l4lb_tests::{
    Agent, Sandbox, counts,
    mesos::{
        FakeMesos,
        model::{PortSpec, TaskSpec, agent, framework, get_state, task_updated},
    },
    require_root,
    table::vip_of,
};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(15);

fn cluster() -> Value {
    let web = |id: &str, ip: &str| {
        TaskSpec::new(id, "fw-m", "a-S1", ip).port(PortSpec::tcp(8080, "/web:80"))
    };
    let mut api = TaskSpec::new("api-0-server__7a7f", "fw-h", "a-S1", "127.0.0.4")
        .port(PortSpec::tcp(9090, "api:80"));
    api.name = "api-0-server".into();
    get_state(
        vec![agent("a-S1", "127.0.0.1")],
        vec![
            framework("fw-m", "marathon"),
            framework("fw-h", "hello-world"),
        ],
        vec![
            web("web.1", "127.0.0.2").json(),
            web("web.2", "127.0.0.3").json(),
            api.json(),
        ],
    )
}

#[test]
fn tasks_of_two_frameworks_through_vips_names_and_a_kill() {
    require_root();
    let mut sb = Sandbox::new("mesos").unwrap();
    let _w1 = sb.spawn_testsrv("web1", &["127.0.0.2:8080"], &[]).unwrap();
    let _w2 = sb.spawn_testsrv("web2", &["127.0.0.3:8080"], &[]).unwrap();
    let _api = sb.spawn_testsrv("api", &["127.0.0.4:9090"], &[]).unwrap();
    let m = FakeMesos::start(&mut sb, &cluster(), 500).unwrap();
    let url = m.url();
    let args = [
        "--mesos",
        &url,
        "--dns-listen",
        "127.0.0.1:5353",
        "--dns-ip-sources",
        "netinfo,host",
    ];
    let agent = Agent::start_with_args(&mut sb, "", &args).unwrap();
    let table = agent.wait_table("both VIPs", BOUND, |t| {
        vip_of(t, "127.0.0.3:8080").is_some() && vip_of(t, "127.0.0.4:9090").is_some()
    });
    let web = vip_of(&table, "127.0.0.2:8080").unwrap();
    let api = vip_of(&table, "127.0.0.4:9090").unwrap();
    assert_eq!(vip_of(&table, "127.0.0.3:8080").as_ref(), Some(&web));

    let reached = sb.reach_each(&web, &["web1", "web2"], 20).unwrap();
    assert!(reached.iter().eq(["web1", "web2"]), "{reached:?}");
    assert_eq!(
        counts(&sb.probe_tcp(&api, 10).unwrap()).get("api"),
        Some(&10)
    );

    let ip = |v: &str| v.rsplit_once(':').unwrap().0.to_owned();
    let a = |name: &str, want: &[&str]| sb.wait_answers(name, "A", want, BOUND);
    a("web.marathon.l4lb.thisdcos.directory", &[&ip(&web)]);
    a("api.hello-world.l4lb.thisdcos.directory", &[&ip(&api)]);
    a("web.marathon.mesos", &["127.0.0.2", "127.0.0.3"]);
    a("api-0-server.hello-world.mesos", &["127.0.0.4"]);

    // TASK_KILLED: its backend and its name go, the rest stays.
    m.emit(&task_updated("fw-m", "web.2", "a-S1", "TASK_KILLED"))
        .unwrap();
    agent.wait_table("web.2 gone", BOUND, |t| {
        vip_of(t, "127.0.0.3:8080").is_none()
    });
    let c = counts(&sb.probe_tcp(&web, 20).unwrap());
    assert_eq!(c.keys().cloned().collect::<Vec<_>>(), ["web1"], "{c:?}");
    sb.wait_answers("web.marathon.mesos", "A", &["127.0.0.2"], BOUND);

    // A stream cut mid-record: the table stays, the agent subscribes again.
    let before = m.stat("subscriptions");
    m.fault("cut", None).unwrap();
    m.wait_stat_above("subscriptions", before, BOUND);
    assert_eq!(
        counts(&sb.probe_tcp(&api, 10).unwrap()).get("api"),
        Some(&10)
    );

    // A master answering 503, then a garbage record: no table change; once
    // it answers again the agent is back on the stream.
    m.fault("status", Some(503)).unwrap();
    m.fault("garbage", None).unwrap();
    agent.wait_log("bad record", "the garbage record refused", BOUND);
    thread::sleep(Duration::from_millis(500));
    let c = counts(&sb.probe_tcp(&web, 10).unwrap());
    assert_eq!(c.keys().cloned().collect::<Vec<_>>(), ["web1"], "{c:?}");
    let before = m.stat("subscriptions");
    m.clear_faults().unwrap();
    m.wait_stat_above("subscriptions", before, BOUND);
    let (code, body) = sb.agent_http("/metrics");
    assert_eq!(code, "200");
    assert!(
        body.contains("l4lb_mesos_stream_reconnects_total"),
        "{body}"
    );
}
