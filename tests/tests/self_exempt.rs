//! Issue 11: the agent never balances its own connections. An app with
//! `VIP_0` = Marathon's own address used to capture the agent's next read
//! (token included), and after a restart the hijack was adopted from the
//! maps: the source was lost for good. The agent here runs inside the hooked
//! cgroup (as with the default `--cgroup`, the root) and is registered in the
//! pinned self map, which the hooks check before rewriting anything.
use std::time::Duration;

use l4lb_tests::{Agent, FakeMarathon, Sandbox, TaskSpec, counts, redis_app, require_root};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(20);

#[test]
fn a_vip_on_marathons_address_captures_other_processes_but_never_the_agent() {
    require_root();
    let mut sb = Sandbox::new("selfex").unwrap();
    sb.spawn_testsrv("hijacker", &["127.0.0.2:7000"], &[])
        .unwrap();
    let m = FakeMarathon::start(&mut sb, 1, Value::Null).unwrap();
    let marathon = m.addrs()[0].to_string();
    let evil = redis_app("/evil", &marathon, &[TaskSpec::new("127.0.0.2", 7000)]);
    m.add_app(evil).unwrap();
    let args = ["--marathon", &m.url(0), "--marathon-resync-secs", "1"];
    let mut agent = Agent::start_hooked(&mut sb, "", &args).unwrap();
    agent.wait_vips(1, BOUND).unwrap();

    // Any other process of the cgroup is balanced to the app.
    let v = sb.probe_tcp(&marathon, 5).unwrap();
    assert_eq!(counts(&v).get("hijacker"), Some(&5), "{v}");

    // A restarted agent (hooks and maps stay) connects to Marathon anew:
    // those reads must reach Marathon, so a new app reaches its table.
    agent
        .kill_no_teardown(libc::SIGTERM, Duration::from_secs(10))
        .unwrap();
    let agent = Agent::start_hooked(&mut sb, "", &args).unwrap();
    m.add_app(redis_app(
        "/web",
        "/web:80",
        &[TaskSpec::new("127.0.0.3", 80)],
    ))
    .unwrap();
    agent.wait_vips(2, BOUND).unwrap();
    let id = l4lb_agent::datapath::self_exempt::registered(sb.pin_root()).unwrap();
    assert_eq!(id.tgid, agent.pid(), "{id:?}");
    // Other processes are still balanced.
    let v = sb.probe_tcp(&marathon, 3).unwrap();
    assert_eq!(counts(&v).get("hijacker"), Some(&3), "{v}");
}

/// The same with Marathon on another host (a second sandbox behind a veth):
/// the agent must not route Marathon's address to `l4lb0` either, or the
/// routes that keep escaped VIP packets on the node would cut its reads.
#[test]
fn a_vip_on_a_remote_marathon_neither_captures_nor_cuts_the_agents_reads() {
    require_root();
    let mut node = Sandbox::new("selfex-n").unwrap();
    let mut ctl = Sandbox::new("selfex-c").unwrap();
    let ip = |args: &[&str]| l4lb_tests::run(std::process::Command::new("ip").args(args)).unwrap();
    let (n, c) = (node.netns().to_string(), ctl.netns().to_string());
    ip(&[
        "-n", &n, "link", "add", "v0", "type", "veth", "peer", "name", "p0", "netns", &c,
    ]);
    for (ns, dev, addr) in [(&n, "v0", "198.18.8.1/24"), (&c, "p0", "198.18.8.2/24")] {
        ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    node.spawn_testsrv("hijacker", &["127.0.0.2:7000"], &[])
        .unwrap();
    let m = FakeMarathon::start_on(&mut ctl, "198.18.8.2", Value::Null).unwrap();
    let marathon = m.addrs()[0].to_string();
    let evil = redis_app("/evil", &marathon, &[TaskSpec::new("127.0.0.2", 7000)]);
    m.add_app(evil).unwrap();
    let args = ["--marathon", &m.url(0), "--marathon-resync-secs", "1"];
    let agent = Agent::start_hooked(&mut node, "", &args).unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    let v = node.probe_tcp(&marathon, 5).unwrap();
    assert_eq!(counts(&v).get("hijacker"), Some(&5), "{v}");
    // The agent's reads keep reaching Marathon: a new app reaches its table.
    m.add_app(redis_app(
        "/web",
        "/web:80",
        &[TaskSpec::new("127.0.0.3", 80)],
    ))
    .unwrap();
    agent.wait_vips(2, BOUND).unwrap();
    agent.wait_log(
        "control-plane address: no l4lb0 route",
        "the skipped route's warning",
        BOUND,
    );
}
