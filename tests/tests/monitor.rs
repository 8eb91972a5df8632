//! `l4lb-agent monitor`: the lines it prints for a known sequence of
//! connections, its kernel-side VIP filter, and the lease it gives back.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use l4lb_tests::{Agent, Sandbox, agent_bin, require_root};
use serde_json::Value;

const CONFIG: &str = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000]\n  - vip: 11.0.0.2:7000\n    backends: []\n";

/// A running `monitor --json`, killed (by its pid) if the test ends first.
struct Monitor {
    child: Child,
    lines: Option<thread::JoinHandle<Vec<String>>>,
}

impl Monitor {
    /// Starts it and waits until it holds the lease.
    fn start(sb: &Sandbox, extra: &[&str]) -> Monitor {
        let mut child = sb
            .in_netns(agent_bin())
            .args(["monitor", "--json", "--seconds", "30", "--pin-root"])
            .arg(sb.pin_root())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (ready_tx, ready) = mpsc::channel();
        thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.starts_with("monitor: following") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let lines = Some(thread::spawn(move || {
            stdout.lines().map_while(Result::ok).collect()
        }));
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("monitor never took the lease");
        Monitor { child, lines }
    }

    /// Every event it printed before exiting (it stops by itself: --count).
    fn events(mut self) -> Vec<Value> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "monitor: {status}");
        // Its stdout closed with it: the reader has everything.
        let lines = self.lines.take().unwrap().join().unwrap();
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lease_until(sb: &Sandbox) -> u64 {
    let out = l4lb_tests::run(
        std::process::Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(sb.pin_root().join("L4LB_MONITOR_CONFIG")),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    // With BTF, bpftool puts the typed value under "formatted".
    let value = &v[0]["formatted"]["value"];
    value["until_ns"]
        .as_u64()
        .unwrap_or_else(|| panic!("no until_ns in {out}"))
}

#[test]
fn monitor_prints_each_decision_and_why() {
    require_root();
    let mut sb = Sandbox::new("monitor").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    let agent = Agent::start(&mut sb, CONFIG).unwrap();
    agent.wait_vips(2, Duration::from_secs(20)).unwrap();
    assert_eq!(lease_until(&sb), 0, "a lease before any monitor ran");

    let monitor = Monitor::start(&sb, &["--count", "4"]);
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "3"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    let v = sb
        .probe(&["tcp", "--to", "11.0.0.2:7000", "-n", "1"])
        .unwrap();
    assert_eq!(v["errors"], 1, "{v}");
    let events = monitor.events();
    assert_eq!(events.len(), 4, "{events:?}");
    for e in &events[..3] {
        assert_eq!(
            (&e["hook"], &e["reason"], &e["policy"], &e["proto"]),
            (
                &"connect".into(),
                &"new".into(),
                &"p2c".into(),
                &"tcp".into()
            ),
            "{e}"
        );
        assert_eq!(e["vip"], "11.0.0.1:7000", "{e}");
        assert_eq!(e["backend"], "127.0.0.2:7000", "{e}");
        assert!(e["pid"].as_u64().is_some_and(|p| p > 0), "{e}");
    }
    let refused = &events[3];
    assert_eq!(refused["reason"], "no-backend", "{refused}");
    assert_eq!(refused["vip"], "11.0.0.2:7000", "{refused}");
    assert!(refused["backend"].is_null(), "{refused}");
    // The monitor gave its lease back: the programs send nothing now.
    assert_eq!(lease_until(&sb), 0);
}

#[test]
fn monitor_filters_by_vip_in_the_kernel() {
    require_root();
    let mut sb = Sandbox::new("monitor-vip").unwrap();
    sb.spawn_testsrv("a", &["127.0.0.2:7000"], &[]).unwrap();
    let agent = Agent::start(&mut sb, CONFIG).unwrap();
    agent.wait_vips(2, Duration::from_secs(20)).unwrap();

    let monitor = Monitor::start(&sb, &["--vip", "11.0.0.2:7000", "--count", "1"]);
    sb.probe(&["tcp", "--to", "11.0.0.1:7000", "-n", "5"])
        .unwrap();
    sb.probe(&["tcp", "--to", "11.0.0.2:7000", "-n", "1"])
        .unwrap();
    let events = monitor.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["vip"], "11.0.0.2:7000", "{events:?}");
    assert_eq!(events[0]["reason"], "no-backend", "{events:?}");
}
