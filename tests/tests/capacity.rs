//! Map capacity from flags; a full map is a clear error and a counter, and the
//! entries already there keep serving.
use std::time::{Duration, Instant};

use l4lb_tests::{Agent, Sandbox, require_root};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(20);

fn vips(n: usize) -> String {
    let mut y = String::from("vips:\n");
    for i in 1..=n {
        y += &format!("  - vip: 11.0.0.{i}:7000\n    backends: [127.0.0.2:7000]\n");
    }
    y
}

fn wait_log(agent: &Agent, needle: &str) {
    let deadline = Instant::now() + BOUND;
    while !agent.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_services_map_skips_new_vips_and_keeps_serving() {
    require_root();
    let mut sb = Sandbox::new("cap-services").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    let agent = Agent::start_with_args(&mut sb, &vips(3), &["--max-services", "3"]).unwrap();
    agent.wait_vips(3, BOUND).unwrap();

    agent.rewrite_config(&vips(5)).unwrap();
    wait_log(&agent, "raise --max-services");
    assert_eq!(agent.vips_json().unwrap().as_array().unwrap().len(), 3);
    for i in 1..=3 {
        let v = sb
            .probe(&["tcp", "--to", &format!("11.0.0.{i}:7000"), "-n", "3"])
            .unwrap();
        assert_eq!(v["counts"], json!({"a": 3}), "11.0.0.{i}: {v}");
    }
    let out = sb
        .in_netns("curl")
        .args(["-s", "http://127.0.0.1:62080/metrics"])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains("l4lb_capacity_skipped_services_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_full_slots_array_keeps_the_old_table_of_a_changed_service() {
    require_root();
    let mut sb = Sandbox::new("cap-slots").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    sb.spawn_testsrv("b", &["127.0.0.3:7000"], &[]).unwrap();
    // Room for two 251-slot tables only.
    let agent = Agent::start_with_args(&mut sb, &vips(2), &["--max-slots", "502"]).unwrap();
    agent.wait_vips(2, BOUND).unwrap();
    // Changing a service needs a second range while the old one may be in use: no room.
    agent.rewrite_config("vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.3:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.2:7000]\n").unwrap();
    wait_log(&agent, "raise --max-slots");
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "3"])
        .unwrap();
    assert_eq!(
        v["counts"],
        json!({"a": 3}),
        "the old table must keep serving: {v}"
    );
}

/// A full backends map used to reject the whole apply, unrelated changes
/// included. Now only the VIP that needs a backend id that is not there is skipped.
#[test]
fn a_full_backends_map_skips_only_what_does_not_fit() {
    require_root();
    let mut sb = Sandbox::new("cap-backends").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    sb.spawn_testsrv("b", &["127.0.0.3:7000"], &[]).unwrap();
    let two = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.3:7000]\n";
    // Backend ids 1 and 2 only.
    let agent = Agent::start_with_args(&mut sb, two, &["--max-backends", "3"]).unwrap();
    agent.wait_vips(2, BOUND).unwrap();
    // 11.0.0.1 moves to known backends; 11.0.0.3 needs a third one.
    agent.rewrite_config("vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.3:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.3:7000]\n  - vip: 11.0.0.3:7000\n    backends: [127.0.0.4:7000]\n").unwrap();
    wait_log(&agent, "raise --max-backends");
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "5"])
        .unwrap();
    assert_eq!(
        v["counts"],
        json!({"b": 5}),
        "the unrelated change must apply: {v}"
    );
    assert_eq!(agent.vips_json().unwrap().as_array().unwrap().len(), 2);
    assert!(
        agent.log().contains("11.0.0.3:7000"),
        "the warning names the VIP:\n{}",
        agent.log()
    );
    let out = sb
        .in_netns("curl")
        .args(["-s", "http://127.0.0.1:62080/metrics"])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains("l4lb_capacity_skipped_services_total 1"),
        "{metrics}"
    );
}
