//! Marathon pods, end to end. A pod in container networking
//! and one in host networking, each with a VIP label on its container's
//! endpoint, read from the (fake) Marathon's `/v2/pods/::status`; real TCP
//! connections through the VIPs reach the pods' backends; the DNS names are
//! the peers' (dcos-net `dcos_net_mesos_listener_tests` `pod_on_host` /
//! `pod_on_dcos`: a pod task is named by its DiscoveryInfo name, the pod;
//! Mesos-DNS `generator.go` taskRecord: the same, SRVs from its DiscoveryInfo
//! ports, no `.slave` SRV); a pod scaled down and a pod removed, each by
//! Marathon's events, change and withdraw the VIP with a targeted re-read.
use std::{collections::BTreeSet, time::Duration};

use l4lb_tests::{
    Agent, FakeMarathon, PodInstanceSpec, Sandbox, TaskSpec, counts, pod_status, redis_app,
    require_root,
    table::{backends, row_of},
};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(15);

fn addrs_of(row: &Value) -> BTreeSet<String> {
    backends(row).into_iter().map(|(a, _)| a).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn pod_vips_and_names_follow_marathon_pods_through_events() {
    require_root();
    let mut sb = Sandbox::new("pods").unwrap();
    sb.spawn_testsrv("web-a", &["127.0.0.5:8080"], &[]).unwrap();
    sb.spawn_testsrv("web-b", &["127.0.0.6:8080"], &[]).unwrap();
    sb.spawn_testsrv("cache", &["127.0.0.7:31500"], &[])
        .unwrap();
    let m = FakeMarathon::start(&mut sb, 1, Value::Null).unwrap();
    // `/web`: container networking (network `dcos`), the container's own
    // address + containerPort; two instances on two agents.
    let web_ep = json!([{"name": "http", "containerPort": 8080, "protocol": ["tcp"],
                         "labels": {"VIP_0": "/web:80"}}]);
    let web = pod_status(
        "/web",
        "container",
        web_ep,
        &[
            PodInstanceSpec::new("127.0.0.2").addresses(&["127.0.0.5"]),
            PodInstanceSpec::new("127.0.0.3").addresses(&["127.0.0.6"]),
        ],
    );
    m.put_pod(&web).unwrap();
    // `/cache`: host networking, the agent + the allocated host port.
    let cache_ep = json!([{"name": "redis", "hostPort": 0, "protocol": ["tcp"],
                           "labels": {"VIP_0": "/cache:6379"}}]);
    let cache = pod_status(
        "/cache",
        "host",
        cache_ep,
        &[PodInstanceSpec::new("127.0.0.7").host_ports(&[31500])],
    );
    m.put_pod(&cache).unwrap();

    let args = ["--marathon", &m.url(0), "--dns-listen", "127.0.0.1:5353"];
    let agent = Agent::start_with_args(&mut sb, "", &args).unwrap();
    let table = agent.wait_table("both pods' VIPs", BOUND, |t| {
        row_of(t, "127.0.0.6:8080").is_some() && row_of(t, "127.0.0.7:31500").is_some()
    });
    let web_row = row_of(&table, "127.0.0.5:8080").unwrap();
    assert_eq!(
        addrs_of(web_row),
        set(&["127.0.0.5:8080", "127.0.0.6:8080"]),
        "{table}"
    );
    let web_vip = web_row["vip"].as_str().unwrap().to_owned();
    let cache_vip = row_of(&table, "127.0.0.7:31500").unwrap()["vip"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(web_vip.ends_with(":80") && cache_vip.ends_with(":6379"));

    // Real connections through the VIPs reach the pods.
    let reached = sb.reach_each(&web_vip, &["web-a", "web-b"], 20).unwrap();
    assert!(reached.iter().eq(["web-a", "web-b"]), "{reached:?}");
    let c = counts(&sb.probe_tcp(&cache_vip, 5).unwrap());
    assert_eq!(c.get("cache"), Some(&5), "{c:?}");

    // Named VIPs (dcos-net): `<label>.marathon.l4lb.thisdcos.directory`.
    let web_ip = web_vip.rsplit_once(':').unwrap().0;
    let cache_ip = cache_vip.rsplit_once(':').unwrap().0;
    let l4lb = "marathon.l4lb.thisdcos.directory";
    assert_eq!(
        sb.wait_short(&format!("web.{l4lb}"), "A", BOUND, |a| !a.is_empty()),
        [web_ip]
    );
    assert_eq!(
        sb.dig_short(&format!("cache.{l4lb}"), "A").unwrap(),
        &[cache_ip]
    );
    // Mesos-DNS: the pod's name (DiscoveryInfo), agents by DC/OS's IP sources.
    assert_eq!(
        sb.dig_short("web.marathon.mesos", "A").unwrap(),
        &["127.0.0.2", "127.0.0.3"]
    );
    let srv = sb.dig_short("_web._tcp.marathon.mesos", "SRV").unwrap();
    assert_eq!(srv.len(), 2, "{srv:?}");
    assert!(
        srv.iter().all(|s| s.starts_with("0 1 8080 web-")
            && (s.ends_with("-s1.marathon.mesos.") || s.ends_with("-s2.marathon.mesos."))),
        "{srv:?}"
    );
    let srv = sb
        .dig_short("_redis._cache._tcp.marathon.mesos", "SRV")
        .unwrap();
    assert!(
        srv.len() == 1 && srv.iter().all(|s| s.starts_with("0 1 31500 cache-")),
        "{srv:?}"
    );
    assert_eq!(
        sb.dig_status("_cache._tcp.marathon.slave.mesos", "SRV"),
        "NXDOMAIN"
    );
    assert_eq!(sb.dig_status("main.marathon.mesos", "A"), "NXDOMAIN");
    // dcos-net: container IPs of the pod's tasks.
    assert_eq!(
        sb.dig_short("web.marathon.containerip.dcos.thisdcos.directory", "A")
            .unwrap(),
        &["127.0.0.5", "127.0.0.6"]
    );

    // Scaled to one instance (pod_updated_event): the VIP follows.
    let mut one = web.clone();
    one["instances"].as_array_mut().unwrap().truncate(1);
    m.put_pod(&one).unwrap();
    let table = agent.wait_table("/web down to one instance", BOUND, |t| {
        row_of(t, "127.0.0.6:8080").is_none() && row_of(t, "127.0.0.5:8080").is_some()
    });
    assert_eq!(row_of(&table, "127.0.0.5:8080").unwrap()["vip"], web_vip);
    let c = counts(&sb.probe_tcp(&web_vip, 10).unwrap());
    assert_eq!(c.get("web-a"), Some(&10), "{c:?}");

    // Removed (pod_deleted_event): the VIP and its name are withdrawn.
    m.remove_pod("/cache").unwrap();
    let table = agent.wait_table("/cache withdrawn", BOUND, |t| {
        row_of(t, "127.0.0.7:31500").is_none() && row_of(t, "127.0.0.5:8080").is_some()
    });
    assert!(!table.to_string().contains(&cache_vip), "{table}");
    sb.wait_answers(&format!("cache.{l4lb}"), "A", &[], BOUND);
    assert_eq!(
        sb.dig_short(&format!("web.{l4lb}"), "A").unwrap(),
        &[web_ip]
    );

    // Each change was a targeted read of that pod (events name the pod).
    let log = m.log();
    for read in ["GET /v2/pods/web::status", "GET /v2/pods/cache::status"] {
        assert!(log.contains(read), "no {read} in the fake's log:\n{log}");
    }
}

#[test]
fn a_marathon_without_pods_still_serves_its_apps() {
    require_root();
    let mut sb = Sandbox::new("nopods").unwrap();
    let apps = json!({"apps": [redis_app("/web", "/web:80", &[TaskSpec::new("127.0.0.2", 80)])]});
    let m = FakeMarathon::start_with_args(&mut sb, 1, apps, &["--no-pods"]).unwrap();
    let agent = Agent::start_with_args(&mut sb, "", &["--marathon", &m.url(0)]).unwrap();
    agent.wait_table("the app's VIP", BOUND, |t| {
        row_of(t, "127.0.0.2:80").is_some()
    });
    m.scale("/web", &TaskSpec::new("127.0.0.3", 80)).unwrap();
    agent.wait_table("the app scaled up", BOUND, |t| {
        row_of(t, "127.0.0.3:80").is_some_and(|r| backends(r).len() == 2)
    });
    let needle = "a Marathon without pods";
    agent.wait_log(needle, "the no-pods notice", BOUND);
    assert_eq!(agent.log().matches(needle).count(), 1, "logged once");
}
