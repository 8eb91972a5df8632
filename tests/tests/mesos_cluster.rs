//! The agent following a whole (test) Mesos cluster over the operator API:
//! tasks of three frameworks, marathon (a `VIP_0` label), metronome (a job,
//! named only) and an SDK-style `kafka` (DiscoveryInfo name `broker`, port
//! label `VIP_0=broker:9092`), each reached through its VIP from the
//! agent's cgroup and resolved with dig; then a kill, an agent removed and
//! a framework torn down (each as Mesos reports it: TASK_UPDATEDs, then
//! AGENT_REMOVED or FRAMEWORK_REMOVED; the sequence of dcos-net's
//! `hello-world.json`), and a master failover (`--mesos URL1,URL2`: the old
//! leader answers 307 to the new one) that loses no backend.
//!
//! Names as dcos-net's `dcos_net_mesos_listener_tests` and Mesos-DNS's
//! `generator_test.go` give them: `<VIP label>.<framework>.l4lb.thisdcos.directory`
//! and `<DiscoveryInfo name>.<framework>.mesos`.
use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{
    Agent, Sandbox,
    mesos::{
        FakeMesos,
        model::{
            PortSpec, TaskSpec, agent, agent_added, agent_removed, framework, get_state,
            task_added, task_updated,
        },
    },
    require_root,
    table::{backends, row, vip_of},
};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(15);
const WEB: &str = "web.marathon.l4lb.thisdcos.directory";
const BROKER: &str = "broker.kafka.l4lb.thisdcos.directory";

fn web(id: &str, agent_id: &str, ip: &str) -> TaskSpec {
    TaskSpec::new(id, "fw-marathon", agent_id, ip).port(PortSpec::tcp(8080, "/web:80"))
}

/// An SDK task: task name `kafka-N-broker`, DiscoveryInfo name `broker`.
fn broker(n: u8, agent_id: &str, ip: &str) -> TaskSpec {
    let id = format!("kafka-{n}-broker__5c1e0a7d-{n}");
    let mut t =
        TaskSpec::new(&id, "fw-kafka", agent_id, ip).port(PortSpec::tcp(9092, "broker:9092"));
    t.name = format!("kafka-{n}-broker");
    t.discovery_name = Some("broker".into());
    t
}

fn kafka() -> Value {
    framework("fw-kafka", "kafka")
}

/// Two agents; marathon's `/web` on both, metronome's job on S1, kafka's
/// brokers on both.
fn cluster() -> Value {
    let job = TaskSpec::new("job.run-20261205", "fw-metronome", "a-S1", "127.0.0.5");
    get_state(
        vec![agent("a-S1", "127.0.0.1"), agent("a-S2", "127.0.0.21")],
        vec![
            framework("fw-marathon", "marathon"),
            framework("fw-metronome", "metronome"),
            kafka(),
        ],
        vec![
            web("web.1", "a-S1", "127.0.0.2").json(),
            web("web.2", "a-S2", "127.0.0.3").json(),
            web("web.3", "a-S1", "127.0.0.7").json(),
            job.json(),
            broker(0, "a-S2", "127.0.0.4").json(),
            broker(1, "a-S1", "127.0.0.6").json(),
        ],
    )
}

/// The test servers behind the tasks: id → address.
const SERVERS: &[(&str, &str)] = &[
    ("web1", "127.0.0.2:8080"),
    ("web2", "127.0.0.3:8080"),
    ("web3", "127.0.0.7:8080"),
    ("web4", "127.0.0.8:8080"),
    ("broker0", "127.0.0.4:9092"),
    ("broker1", "127.0.0.6:9092"),
];

fn addr(id: &str) -> &'static str {
    SERVERS.iter().find(|(s, _)| *s == id).expect("a server").1
}

/// The backend addresses of `vip`'s row; empty when there is no row.
fn backend_set(table: &Value, vip: &str) -> BTreeSet<String> {
    let has = table
        .as_array()
        .is_some_and(|rows| rows.iter().any(|r| r["vip"] == vip));
    if !has {
        return BTreeSet::new();
    }
    backends(row(table, vip, "tcp"))
        .into_iter()
        .map(|(a, _)| a)
        .collect()
}

/// The agent under test, its sandbox, and the VIPs (`ip:port`) its first
/// catalog gave.
struct Seen<'a> {
    sb: &'a Sandbox,
    l4lb: &'a Agent,
    web: String,
    broker: String,
}

/// Waits for the table to hold exactly the backends of these test servers
/// (none: no row), then connects through each VIP (every server answers,
/// no other), resolves its name, and the Mesos-DNS A records of the tasks
/// (their IPs are the servers'; the metronome job's never changes).
fn check(seen: &Seen, what: &str, web: &[&str], brokers: &[&str]) {
    let Seen { sb, l4lb, .. } = seen;
    let want = [(&seen.web, WEB, web), (&seen.broker, BROKER, brokers)];
    let addrs = |ids: &[&str]| ids.iter().map(|s| addr(s).to_owned()).collect();
    l4lb.wait_table(what, BOUND, |t| {
        want.iter()
            .all(|(vip, _, ids)| backend_set(t, vip) == addrs(ids))
    });
    for (vip, name, ids) in want {
        let ip = vip.rsplit_once(':').expect("ip:port").0;
        if ids.is_empty() {
            sb.wait_answers(name, "A", &[], BOUND);
            continue;
        }
        let reached = sb.reach_each(vip, ids, 10 * ids.len() as u32).unwrap();
        if !reached.iter().eq(ids) {
            let table = l4lb.vips_json().unwrap_or_default();
            panic!("{what}: {vip} reached {reached:?}, not {ids:?}; table with health: {table}");
        }
        sb.wait_answers(name, "A", &[ip], BOUND);
    }
    let ips = |ids: &[&str]| -> Vec<&str> {
        ids.iter()
            .map(|s| addr(s).rsplit_once(':').expect("ip:port").0)
            .collect()
    };
    sb.wait_answers("web.marathon.mesos", "A", &ips(web), BOUND);
    sb.wait_answers("broker.kafka.mesos", "A", &ips(brokers), BOUND);
    sb.wait_answers("job.metronome.mesos", "A", &["127.0.0.5"], BOUND);
}

/// Polls the table from the moment leadership moves until 10 polls after
/// the agent subscribed to `new_leader` (which had `subs` subscriptions
/// before): the VIPs keep their backends.
fn table_stays_until_subscribed(seen: &Seen, before: &Value, new_leader: &FakeMesos, subs: u64) {
    let l4lb = seen.l4lb;
    let deadline = Instant::now() + BOUND;
    let mut polls_after = 0;
    while polls_after < 10 {
        let now = l4lb.vips_json().unwrap();
        for vip in [&seen.web, &seen.broker] {
            let (now_set, was) = (backend_set(&now, vip), backend_set(before, vip));
            assert_eq!(now_set, was, "the switch changed {vip}: {now}");
        }
        if new_leader.stat("subscriptions") > subs {
            polls_after += 1;
        }
        let late = Instant::now() >= deadline;
        assert!(!late, "no subscription to the new leader\n{}", l4lb.log());
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_frameworks_kill_agent_and_framework_removed_and_a_master_failover() {
    require_root();
    let mut sb = Sandbox::new("mesos-cluster").unwrap();
    let mut servers = Vec::new();
    for (id, at) in SERVERS {
        servers.push(sb.spawn_testsrv(id, &[at], &[]).unwrap());
    }
    let (m1, m2) = FakeMesos::start_pair(&mut sb, &cluster(), 300).unwrap();
    let urls = format!("{},{}", m1.url(), m2.url());
    let args = [
        "--mesos",
        &urls,
        "--dns-listen",
        "127.0.0.1:5353",
        "--dns-ip-sources",
        "netinfo,host",
    ];
    let l4lb = Agent::start_with_args(&mut sb, "", &args).unwrap();
    let table = l4lb.wait_table("both VIPs", BOUND, |t| {
        vip_of(t, addr("web3")).is_some() && vip_of(t, addr("broker1")).is_some()
    });
    let seen = Seen {
        sb: &sb,
        l4lb: &l4lb,
        web: vip_of(&table, addr("web1")).unwrap(),
        broker: vip_of(&table, addr("broker0")).unwrap(),
    };
    assert!(seen.web.ends_with(":80") && seen.broker.ends_with(":9092"));
    check(
        &seen,
        "the first catalog",
        &["web1", "web2", "web3"],
        &["broker0", "broker1"],
    );

    // A task killed: its backend and its A record go, the rest stays.
    m1.emit(&task_updated("fw-marathon", "web.3", "a-S1", "TASK_KILLED"))
        .unwrap();
    check(
        &seen,
        "web.3 killed",
        &["web1", "web2"],
        &["broker0", "broker1"],
    );

    // Agent S2 removed: web.2 and kafka-0 go with it.
    m1.remove_agent("a-S2", "TASK_GONE_BY_OPERATOR").unwrap();
    check(&seen, "agent S2 removed", &["web1"], &["broker1"]);

    // Failover: master 2 leads with the same state, master 1 answers 307.
    // The table stays as it was through the switch and after it.
    let before = l4lb.vips_json().unwrap();
    m1.hand_over(&m2).unwrap();
    table_stays_until_subscribed(&seen, &before, &m2, 0);
    assert!(
        m1.stat("redirects") >= 1,
        "the agent did not ask master 1 first"
    );
    assert_eq!(m1.stat("open_streams"), 0);
    check(&seen, "after the failover", &["web1"], &["broker1"]);

    // Events of master 2 reach the maps and DNS: a new agent with a task...
    m2.emit(&agent_added(&agent("a-S3", "127.0.0.22"))).unwrap();
    m2.emit(&task_added(&web("web.4", "a-S3", "127.0.0.8").json()))
        .unwrap();
    check(&seen, "web.4 on master 2", &["web1", "web4"], &["broker1"]);
    // ...and kafka torn down: its VIP and names go, marathon's and
    // metronome's stay.
    m2.teardown(&kafka()).unwrap();
    check(&seen, "kafka removed", &["web1", "web4"], &[]);
    assert_eq!(m1.stat("open_streams"), 0);

    // A real failover back to master 1: elected, it knows the agents only
    // as recovered ones, and no task until they re-register. The table
    // keeps every backend meanwhile, then follows the re-registered state.
    let before = l4lb.vips_json().unwrap();
    let subs = m1.stat("subscriptions");
    let cluster = m2.fail_over_to(&m1).unwrap();
    table_stays_until_subscribed(&seen, &before, &m1, subs);
    m1.reregister(&cluster).unwrap();
    check(&seen, "agents re-registered", &["web1", "web4"], &[]);
    m1.emit(&task_updated("fw-marathon", "web.4", "a-S3", "TASK_KILLED"))
        .unwrap();
    check(&seen, "web.4 killed on master 1", &["web1"], &[]);

    // A lone AGENT_REMOVED (no TASK_UPDATED before it) forgets the agent
    // only, as dcos-net's `handle_agent_removed` does: its tasks stay until
    // Mesos ends them (an unreachable agent's tasks may come back, and
    // Mesos sends no TASK_ADDED for them then). The task added after it
    // (on S3, at web.4's old address) shows the stream got that far.
    m1.emit(&agent_removed("a-S1")).unwrap();
    m1.emit(&task_added(&web("web.5", "a-S3", "127.0.0.8").json()))
        .unwrap();
    check(&seen, "a lone AGENT_REMOVED", &["web1", "web4"], &[]);
    drop(servers);
}
