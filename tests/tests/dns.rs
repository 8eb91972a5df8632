//! The agent's DNS server answered by Debian's dig, the way the seed tutorial
//! shows, on a static file and on the test Marathon. All inside the sandbox netns.
use std::time::Duration;

use l4lb_tests::{Agent, FakeMarathon, Sandbox, TaskSpec, redis_app, require_root};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(10);

#[test]
fn vip_name_resolves_and_connects_through_the_datapath() {
    require_root();
    let mut sb = Sandbox::new("dns-static").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:6379"], &[]).unwrap();
    let agent = Agent::start_with_args(
        &mut sb,
        "vips:\n  - name: /redis:6379\n    backends: [127.0.0.2:6379]\n",
        &["--dns-listen", "127.0.0.1:5353"],
    )
    .unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    let vip = agent.vips_json().unwrap()[0]["vip"]
        .as_str()
        .unwrap()
        .to_string();
    let vip_ip = vip.rsplit_once(':').unwrap().0.to_string();

    let out = sb.wait_dig(
        &["redis.marathon.l4lb.thisdcos.directory"],
        "VIP name",
        BOUND,
        |o| o.contains("ANSWER: 1"),
    );
    assert!(out.contains("flags: qr aa"), "{out}");
    let answer = out
        .lines()
        .find(|l| l.starts_with("redis.marathon.l4lb.thisdcos.directory."))
        .unwrap();
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(
        (fields[1], fields[3], fields[4]),
        ("5", "A", vip_ip.as_str()),
        "{out}"
    );

    // A client resolves the name through the agent and connects: the socket hooks send it to the backend.
    let resolved = sb
        .dig(&["+short", "redis.marathon.l4lb.thisdcos.directory"])
        .trim()
        .to_string();
    assert_eq!(resolved, vip_ip);
    let v = sb
        .probe(&["tcp", "--to", &format!("{resolved}:6379"), "-n", "5"])
        .unwrap();
    assert_eq!(v["counts"], json!({"a": 5}), "{v}");

    // Outside the zones: REFUSED (not an open resolver). Unknown name in a zone: NXDOMAIN.
    assert!(sb.dig(&["example.com"]).contains("status: REFUSED"));
    assert!(
        sb.dig(&["nope.marathon.l4lb.thisdcos.directory"])
            .contains("status: NXDOMAIN")
    );
    // Case-insensitive.
    assert!(
        sb.dig(&["REDIS.Marathon.L4LB.thisdcos.directory"])
            .contains("ANSWER: 1")
    );
}

#[test]
fn mesos_dns_records_follow_marathon_tasks() {
    require_root();
    let mut sb = Sandbox::new("dns-marathon").unwrap();
    let m = FakeMarathon::start(&mut sb, 1, json!({"apps": [redis_app("/redis-tutorial", "/redis:6379", &[TaskSpec::new("127.0.0.2", 31256)])]})).unwrap();
    let agent = Agent::start_with_args(
        &mut sb,
        "",
        &["--marathon", &m.url(0), "--dns-listen", "127.0.0.1:5353"],
    )
    .unwrap();
    agent.wait_vips(1, BOUND).unwrap();

    // The seed's commands.
    let a = sb.wait_dig(&["redis-tutorial.marathon.mesos"], "task A", BOUND, |o| {
        o.contains("ANSWER: 1")
    });
    assert!(a.contains("flags: qr aa"), "{a}");
    let line = a
        .lines()
        .find(|l| l.starts_with("redis-tutorial.marathon.mesos."))
        .unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[1], f[3], f[4]), ("60", "A", "127.0.0.2"), "{a}");

    let srv = sb.dig(&["srv", "_redis-tutorial._tcp.marathon.mesos"]);
    assert!(
        srv.contains("flags: qr aa") && srv.contains("ANSWER: 1"),
        "{srv}"
    );
    let line = srv
        .lines()
        .find(|l| l.starts_with("_redis-tutorial._tcp.marathon.mesos."))
        .unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (f[1], f[3], f[4], f[5], f[6]),
        ("60", "SRV", "0", "1", "31256"),
        "{srv}"
    );
    let target = f[7];
    assert!(
        target.starts_with("redis-tutorial-") && target.ends_with(".marathon.mesos."),
        "{srv}"
    );
    let additional = srv
        .split(";; ADDITIONAL SECTION:")
        .nth(1)
        .unwrap_or_else(|| panic!("no ADDITIONAL: {srv}"));
    assert!(
        additional.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 5 && f[0] == target && f[3] == "A" && f[4] == "127.0.0.2"
        }),
        "{srv}"
    );

    // Scale-up shows in A and SRV; kill removes it; unknown tasks are NXDOMAIN.
    let t2 = m
        .scale("/redis-tutorial", &TaskSpec::new("127.0.0.3", 31257))
        .unwrap();
    sb.wait_dig(
        &["redis-tutorial.marathon.mesos"],
        "scale-up A",
        BOUND,
        |o| o.contains("ANSWER: 2") && o.contains("127.0.0.3"),
    );
    sb.wait_dig(
        &["srv", "_redis-tutorial._tcp.marathon.mesos"],
        "scale-up SRV",
        BOUND,
        |o| o.contains("ANSWER: 2") && o.contains(" 31257 "),
    );
    m.kill_now(t2["id"].as_str().unwrap()).unwrap();
    sb.wait_dig(&["redis-tutorial.marathon.mesos"], "kill", BOUND, |o| {
        o.contains("ANSWER: 1") && !o.contains("127.0.0.3")
    });
    assert!(
        sb.dig(&["nosuchtask.marathon.mesos"])
            .contains("status: NXDOMAIN")
    );
    assert!(sb.dig(&["example.org"]).contains("status: REFUSED"));
}

/// A group app (`/dog/big`, Mesos task name `big.dog`) answered the way
/// Mesos-DNS answers it (mesos-dns generator_test.go TestInsertState:
/// `big-dog.marathon.mesos`, `_big-dog._tcp.marathon.mesos` → the canonical
/// `big-dog-<hash>-<tail>` with its A in ADDITIONAL), the legacy dotted name
/// too, and the agent's address first (DC/OS's IPSources host, netinfo) even
/// though the task reports another address of its own.
#[test]
fn group_app_gets_mesos_dns_names() {
    require_root();
    let mut sb = Sandbox::new("dns-group").unwrap();
    let task = TaskSpec::new("127.0.0.2", 31256).ips(&["127.0.0.9"]);
    let apps = json!({"apps": [redis_app("/dog/big", "/bigdog:6379", &[task])]});
    let m = FakeMarathon::start(&mut sb, 1, apps).unwrap();
    let agent = Agent::start_with_args(
        &mut sb,
        "",
        &["--marathon", &m.url(0), "--dns-listen", "127.0.0.1:5353"],
    )
    .unwrap();
    agent.wait_vips(1, BOUND).unwrap();

    for name in [
        "big-dog.marathon.mesos",
        "big.dog.marathon.mesos",
        "big-dog.marathon.slave.mesos",
    ] {
        let a = sb.wait_dig(&["+short", name], name, BOUND, |o| !o.trim().is_empty());
        assert_eq!(a.trim(), "127.0.0.2", "{name}");
    }
    let srv = sb.dig(&["srv", "_big-dog._tcp.marathon.mesos"]);
    let line = srv
        .lines()
        .find(|l| l.starts_with("_big-dog._tcp.marathon.mesos."))
        .unwrap_or_else(|| panic!("no SRV: {srv}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        (f[3], f[4], f[5], f[6]),
        ("SRV", "0", "1", "31256"),
        "{srv}"
    );
    let target = f[7];
    // `big-dog-<5-char hash>-s<k>.marathon.mesos.`
    let (label, rest) = target.split_once('.').unwrap();
    let parts: Vec<&str> = label
        .strip_prefix("big-dog-")
        .unwrap_or_default()
        .split('-')
        .collect();
    assert!(
        rest == "marathon.mesos."
            && parts.len() == 2
            && parts[0].len() == 5
            && parts[1].starts_with('s'),
        "{srv}"
    );
    let additional = srv
        .split(";; ADDITIONAL SECTION:")
        .nth(1)
        .unwrap_or_else(|| panic!("{srv}"));
    assert!(
        additional
            .lines()
            .any(|l| l.starts_with(target) && l.ends_with("127.0.0.2")),
        "{srv}"
    );
    // The slave SRV of the host port, and the legacy SRV name.
    let slave = sb.dig(&["+short", "srv", "_big-dog._udp.marathon.slave.mesos"]);
    assert!(
        slave.contains(" 31256 big-dog-") && slave.contains(".marathon.slave.mesos."),
        "{slave}"
    );
    let legacy = sb.dig(&["+short", "srv", "_big.dog._tcp.marathon.mesos"]);
    assert!(legacy.contains(" 31256 big.dog-"), "{legacy}");
}
