//! Agents the control plane reports by host name (Marathon's `task.host` is
//! whatever the Mesos agent registered with), end to end: the agent resolves
//! them through the resolv.conf it is given (here a test DNS server in the
//! sandbox), its backends follow the name when it moves (no read of
//! Marathon), and a name that does not resolve is a warning naming the app
//! and the host, plus a counter. dcos-net (`dns_hostname_test`), marathon-lb
//! and Mesos-DNS resolve the same names.
use std::{fs, time::Duration};

use l4lb_tests::{
    Agent, FakeMarathon, Sandbox, counts, fake_dns_bin, require_root, table::vip_of, wait,
};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(20);

/// A bridge-networking app: its only backend is the agent's host port.
fn bridge_app(id: &str, label: &str, task: &str, host: &str, port: u16) -> Value {
    json!({"id": id, "instances": 1, "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "portMappings": [
            {"containerPort": 80, "hostPort": 0, "protocol": "tcp", "labels": {"VIP_0": label}}]},
        "tasks": [{"id": task, "appId": id, "host": host, "ports": [port], "state": "TASK_RUNNING",
                   "slaveId": "d0a07cf9-7424-426b-b138-2be9d07b8e62-S4",
                   "ipAddresses": [{"ipAddress": "172.17.0.2", "protocol": "IPv4"}]}]})
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn agents_known_by_name_are_resolved_followed_and_warned_about() {
    require_root();
    let mut sb = Sandbox::new("hostnames").unwrap();
    let zone = sb.workdir().join("zone");
    fs::write(&zone, "agent-1.test 1 127.0.0.2\n").unwrap();
    let resolv = sb.workdir().join("resolv.conf");
    fs::write(
        &resolv,
        "nameserver 127.0.0.53\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let mut dns = sb.in_netns(fake_dns_bin());
    dns.args(["--listen", "127.0.0.53:53", "--zone"]).arg(&zone);
    sb.spawn(dns).unwrap();
    wait::until("the test DNS server's answer", BOUND, || {
        let (out, _) = sb.dig_at("127.0.0.53", 53, &["+short", "agent-1.test", "A"]);
        if out.trim() == "127.0.0.2" {
            Ok(())
        } else {
            Err(out)
        }
    });
    let _a = sb.spawn_testsrv("a", &["127.0.0.2:31001"], &[]).unwrap();
    let _b = sb.spawn_testsrv("b", &["127.0.0.3:31001"], &[]).unwrap();

    let apps = json!({"apps": [
        bridge_app("/web", "/web:80", "web.1", "agent-1.test", 31001),
        bridge_app("/lost", "/lost:80", "lost.1", "nowhere.test", 31002),
    ]});
    let m = FakeMarathon::start(&mut sb, 1, apps).unwrap();
    let resolv = resolv.to_str().unwrap();
    let args = [
        "--marathon",
        &m.url(0),
        "--dns-listen",
        "127.0.0.1:5353",
        "--resolv-conf",
        resolv,
    ];
    let agent = Agent::start_with_args(&mut sb, "", &args).unwrap();
    let table = agent.wait_table("web's backend on agent-1.test", BOUND, |t| {
        vip_of(t, "127.0.0.2:31001").is_some()
    });
    let vip = vip_of(&table, "127.0.0.2:31001").unwrap();
    assert_eq!(counts(&sb.probe_tcp(&vip, 10).unwrap()).get("a"), Some(&10));
    // Mesos-DNS's A record for the task is the agent's address (DC/OS's
    // IPSources host first).
    sb.wait_answers("web.marathon.mesos", "A", &["127.0.0.2"], BOUND);

    // The unresolvable name: a warning naming the app and the host; its app
    // has no backend, so no VIP.
    agent.wait_log("nowhere.test", "the unresolvable host's warning", BOUND);
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("agent host \"nowhere.test\" does not resolve"))
        .unwrap_or_else(|| panic!("no warning for nowhere.test:\n{log}"));
    assert!(line.contains("WARN") && line.contains("/lost"), "{line}");
    assert_eq!(table.as_array().unwrap().len(), 1, "{table}");

    // The name moves: the backend follows at its refresh, without a read.
    let (_, before) = sb.agent_http("/metrics");
    let reads = |body: &str| metric(body, "l4lb_marathon_reads_total{scope=\"all\"}");
    fs::write(&zone, "agent-1.test 1 127.0.0.3\n").unwrap();
    agent.wait_table("web's backend moved to 127.0.0.3", BOUND, |t| {
        vip_of(t, "127.0.0.3:31001").is_some() && vip_of(t, "127.0.0.2:31001").is_none()
    });
    assert_eq!(counts(&sb.probe_tcp(&vip, 10).unwrap()).get("b"), Some(&10));
    agent.wait_log(
        "agent host agent-1.test: now 127.0.0.3 (was 127.0.0.2)",
        "the move logged",
        BOUND,
    );
    let (code, after) = sb.agent_http("/metrics");
    assert_eq!(code, "200");
    assert_eq!(reads(&after), reads(&before), "the move re-read Marathon");
    assert_eq!(
        metric(&after, "l4lb_agent_hosts{state=\"resolved\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "l4lb_agent_hosts{state=\"unresolved\"}"),
        Some(1.0)
    );
    assert!(metric(&after, "l4lb_agent_host_lookup_failures_total").unwrap() >= 1.0);
}
