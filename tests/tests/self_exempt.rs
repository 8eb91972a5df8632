//! The agent never balances its own connections. An app with
//! `VIP_0` = Marathon's own address used to capture the agent's next read
//! (token included), and after a restart the hijack was adopted from the
//! maps: the source was lost for good. Two defences, tested one by one: the
//! guard refuses such a VIP (tests/guard.rs), and below it the hooks never
//! rewrite the agent's calls. The agent here runs inside the hooked cgroup (as
//! with the default `--cgroup`, the root) and is registered in the pinned self
//! map; the hijack is written straight into the maps, as a table left by an
//! agent without the guard would hold it.
use std::{net::SocketAddr, path::Path, thread, time::Duration};

use l4lb_agent::{
    datapath::Maps,
    model::{Proto, ServiceSpec, Vip},
    plan,
};
use l4lb_tests::{Agent, FakeMarathon, Fault, Sandbox, TaskSpec, counts, redis_app, require_root};
use serde_json::Value;

const BOUND: Duration = Duration::from_secs(20);

/// Writes the TCP service `vip` → `backend` straight into the pinned maps,
/// behind the running agent's back.
fn inject_tcp_service(pin_root: &Path, vip: SocketAddr, backend: SocketAddr) {
    let mut maps = Maps::open_pinned(pin_root).unwrap();
    let applied = maps.read_applied().unwrap();
    let mut desired = applied.to_desired();
    let spec = ServiceSpec {
        backends: [(backend, 1)].into(),
        ..Default::default()
    };
    desired.services.insert(
        Vip {
            addr: vip,
            proto: Proto::Tcp,
        },
        spec,
    );
    let plan = plan::plan(&applied, &desired, maps.capacity());
    maps.apply(&plan.now).unwrap();
    maps.apply(&plan.after_grace).unwrap();
}

#[test]
fn a_vip_on_marathons_address_captures_other_processes_but_never_the_agent() {
    require_root();
    let mut sb = Sandbox::new("selfex").unwrap();
    sb.spawn_testsrv("hijacker", &["127.0.0.2:7000"], &[])
        .unwrap();
    let m = FakeMarathon::start(&mut sb, 1, Value::Null).unwrap();
    let marathon = hijacking_app_and_web(&m);
    // The default resync (60 s): nothing re-reads, and so nothing rewrites
    // the maps, but what the test causes.
    let agent = Agent::start_hooked(&mut sb, "", &["--marathon", &m.url(0)]).unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    agent.wait_log(
        "declared by app /evil refused",
        "the guard's refusal",
        BOUND,
    );

    // Below the guard: the hijack in the maps captures any other process…
    inject_tcp_service(
        sb.pin_root(),
        m.addrs()[0],
        "127.0.0.2:7000".parse().unwrap(),
    );
    let v = sb.probe_tcp(&marathon, 5).unwrap();
    assert_eq!(counts(&v).get("hijacker"), Some(&5), "{v}");

    // … but not the agent: Marathon drops every connection, so the agent's
    // next reads connect() anew, through the hooks, while the hijack is in
    // the maps (a failed read applies nothing). Without the exemption they
    // reach the hijacker, fail, and the new app never arrives.
    m.fault(0, Fault::Down).unwrap();
    thread::sleep(Duration::from_millis(300));
    m.clear_faults().unwrap();
    m.add_app(redis_app(
        "/db",
        "/db:5432",
        &[TaskSpec::new("127.0.0.4", 5432)],
    ))
    .unwrap();
    agent.wait_table(
        "the new app, read past the hijack",
        Duration::from_secs(40),
        serves_db,
    );
    let id = l4lb_agent::datapath::self_exempt::registered(sb.pin_root()).unwrap();
    assert_eq!(id.tgid, agent.pid(), "{id:?}");
}

/// Marathon on another host (a second sandbox behind a veth): the guard
/// refuses the app's VIP on Marathon's address (the control-plane rule, end
/// to end), so it neither captures the agent's reads nor gets an `l4lb0`
/// route that would cut them, and the agent keeps following Marathon.
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
    let marathon = hijacking_app_and_web(&m);
    let args = ["--marathon", &m.url(0), "--marathon-resync-secs", "1"];
    let agent = Agent::start_hooked(&mut node, "", &args).unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    agent.wait_log(
        &format!("VIP {marathon}/tcp declared by app /evil refused: 198.18.8.2 is the control-plane endpoint"),
        "the control-plane refusal",
        BOUND,
    );
    let routes = l4lb_tests::run(
        std::process::Command::new("ip").args(["-n", &n, "route", "show", "dev", "l4lb0"]),
    )
    .unwrap();
    assert!(
        !routes.contains("198.18.8.2"),
        "a route cuts Marathon off: {routes}"
    );
    // The agent's reads keep reaching Marathon: a new app reaches its table.
    m.add_app(redis_app(
        "/db",
        "/db:5432",
        &[TaskSpec::new("127.0.0.4", 5432)],
    ))
    .unwrap();
    agent.wait_table("the new app", BOUND, serves_db);
}

/// Adds /web and /evil, whose VIP label is Marathon's own address (its task
/// is the hijacker, 127.0.0.2:7000); returns that address.
fn hijacking_app_and_web(m: &FakeMarathon) -> String {
    let marathon = m.addrs()[0].to_string();
    let evil = redis_app("/evil", &marathon, &[TaskSpec::new("127.0.0.2", 7000)]);
    m.add_app(evil).unwrap();
    m.add_app(redis_app(
        "/web",
        "/web:80",
        &[TaskSpec::new("127.0.0.3", 80)],
    ))
    .unwrap();
    marathon
}

/// True once a VIP of the table balances to /db's task.
fn serves_db(table: &Value) -> bool {
    table.as_array().is_some_and(|rows| {
        rows.iter().any(|r| {
            r["backends"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["addr"] == "127.0.0.4:5432"))
        })
    })
}
