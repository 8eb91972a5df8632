//! Proves the harness itself, without BPF: sandbox isolation, the test
//! server and probe, and cleanup.
use std::{fs, os::unix::fs::MetadataExt, path::Path, process::Command};

use l4lb_tests::{Sandbox, cgroup2_root, require_root};
use serde_json::json;

#[test]
fn tcp_and_udp_round_trips_in_the_sandbox() {
    require_root();
    let mut sb = Sandbox::new("smoke-io").unwrap();
    sb.add_addr("fd00:b::2/128").unwrap();
    let srv = sb
        .spawn_testsrv(
            "a",
            &["127.0.0.2:7000", "[fd00:b::2]:7000"],
            &["127.0.0.2:7001", "[fd00:b::2]:7001"],
        )
        .unwrap();
    assert_eq!(srv.tcp.len(), 2);

    for to in ["127.0.0.2:7000", "[fd00:b::2]:7000"] {
        let v = sb.probe(&["tcp", "--to", to, "-n", "20"]).unwrap();
        assert_eq!(v["counts"], json!({"a": 20}), "{to}: {v}");
        assert_eq!(v["errors"], 0, "{v}");
    }

    for to in ["127.0.0.2:7001", "[fd00:b::2]:7001"] {
        for mode in ["unconnected", "connected"] {
            let v = sb
                .probe(&["udp", "--to", to, "-n", "5", "--mode", mode])
                .unwrap();
            assert_eq!(v["counts"], json!({"a": 5}), "{to} {mode}: {v}");
            assert_eq!(v["sources"], json!([to]), "{to} {mode}: {v}");
            if mode == "connected" {
                assert_eq!(v["peers"], json!([to]), "{v}");
            }
        }
    }
}

#[test]
fn hold_keeps_a_connection_usable() {
    require_root();
    let mut sb = Sandbox::new("smoke-hold").unwrap();
    sb.spawn_testsrv("b", &["127.0.0.3:7000"], &[]).unwrap();
    let out = sb
        .in_cgroup(l4lb_tests::probe_bin())
        .args(["hold", "--to", "127.0.0.3:7000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"one\ntwo\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b\none\ntwo\n");
}

#[test]
fn in_cgroup_is_in_the_cgroup_and_the_netns_and_drop_cleans_up() {
    require_root();
    let (netns_path, cgroup) = {
        let mut sb = Sandbox::new("smoke-iso").unwrap();
        let mut sleep = sb.in_cgroup("sleep");
        sleep.arg("30");
        let pid = sb.spawn(sleep).unwrap();

        let rel = sb.cgroup().strip_prefix(cgroup2_root().unwrap()).unwrap();
        let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let line = cg.lines().find(|l| l.starts_with("0::")).unwrap();
        assert_eq!(line, format!("0::/{}", rel.display()));

        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(Path::new(&format!("/proc/{pid}/ns/net"))),
            ino(&sb.netns_path())
        );
        assert_ne!(ino(Path::new("/proc/self/ns/net")), ino(&sb.netns_path()));

        // No route out: a connect to a non-loopback address fails at once.
        let v = sb
            .probe(&[
                "tcp",
                "--to",
                "11.0.0.1:80",
                "-n",
                "1",
                "--timeout-ms",
                "500",
            ])
            .unwrap();
        assert_eq!(v["error_kinds"], json!({"NetworkUnreachable": 1}), "{v}");
        (sb.netns_path(), sb.cgroup().to_path_buf())
    };
    assert!(!netns_path.exists(), "{} left behind", netns_path.display());
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let name = netns_path.file_name().unwrap().to_str().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(name));
}

#[test]
fn drop_removes_cgroups_a_test_made_below_its_own_and_ends_their_processes() {
    require_root();
    let mut stray = Command::new("sleep").arg("30").spawn().unwrap();
    let cgroup = {
        let sb = Sandbox::new("smoke-nest").unwrap();
        let inner = sb.cgroup().join("moved").join("deeper");
        fs::create_dir_all(&inner).unwrap();
        fs::write(inner.join("cgroup.procs"), stray.id().to_string()).unwrap();
        sb.cgroup().to_path_buf()
    };
    assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    let status = stray.wait().unwrap();
    assert!(
        !status.success(),
        "the process in the nested cgroup was ended"
    );
}
