//! Scale to 0, end to end: as dcos-net does (`dcos_l4lb_mesos_poller_SUITE`
//! `test_app_restart`), an app scaled to 0 takes its named VIP and the VIP's
//! DNS name away, and its tasks coming back bring the same address back (the
//! address is a hash of the name).
use std::time::Duration;

use l4lb_tests::{Agent, FakeMarathon, Sandbox, TaskSpec, redis_app, require_root, table::vip_of};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(15);
const NAME: &str = "web.marathon.l4lb.thisdcos.directory";

/// The name's answers once `pred` holds on them (sorted, one a line).
fn wait_name(sb: &Sandbox, pred: impl Fn(&[String]) -> bool) -> String {
    sb.wait_short(NAME, "A", BOUND, pred).join("\n")
}

#[test]
fn an_app_scaled_to_zero_withdraws_its_vip_and_name_and_gets_them_back() {
    require_root();
    let mut sb = Sandbox::new("scale0").unwrap();
    let web = [TaskSpec::new("127.0.0.2", 80)];
    let other = [TaskSpec::new("127.0.0.3", 81)];
    let apps = json!({"apps": [redis_app("/web", "/web:80", &web), redis_app("/other", "/other:81", &other)]});
    let m = FakeMarathon::start(&mut sb, 1, apps).unwrap();
    let args = ["--marathon", &m.url(0), "--dns-listen", "127.0.0.1:5353"];
    let agent = Agent::start_with_args(&mut sb, "", &args).unwrap();
    let table = agent.wait_table("both VIPs", BOUND, |t| vip_of(t, "127.0.0.2:80").is_some());
    let vip = vip_of(&table, "127.0.0.2:80").unwrap();
    let ip = vip.rsplit_once(':').unwrap().0.to_owned();
    assert_eq!(wait_name(&sb, |a| !a.is_empty()), ip);

    // The last task goes: the VIP and its name go; the other app stays.
    let apps = m.apps().unwrap();
    let task = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "/web")
        .map(|a| a["tasks"][0]["id"].as_str().unwrap().to_owned())
        .unwrap();
    m.kill_now(&task).unwrap();
    let table = agent.wait_table("the VIP withdrawn", BOUND, |t| {
        t.as_array().is_some_and(|r| r.len() == 1) && vip_of(t, "127.0.0.3:81").is_some()
    });
    assert!(!table.to_string().contains(&vip), "{table}");
    wait_name(&sb, <[String]>::is_empty);

    // A task comes back: the same address, the same name.
    m.scale("/web", &TaskSpec::new("127.0.0.4", 80)).unwrap();
    let table = agent.wait_table("the VIP back", BOUND, |t| {
        vip_of(t, "127.0.0.4:80").is_some()
    });
    assert_eq!(vip_of(&table, "127.0.0.4:80").unwrap(), vip, "{table}");
    assert_eq!(wait_name(&sb, |a| !a.is_empty()), ip);
}
