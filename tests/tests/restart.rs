//! The datapath does not depend on the agent process: program links and maps
//! are pinned, so connections keep flowing while the agent is SIGKILLed and
//! restarted, and a restarted agent adopts the pinned table without a window.
use std::{
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{Agent, Sandbox, counts, probe_bin, require_root, run};
use serde_json::Value;

const READY: Duration = Duration::from_secs(20);
const ALL: &str = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.2:7000, 127.0.0.3:7000, 127.0.0.4:7000]\n";

/// A sandbox with the three backends of `ALL` listening.
fn with_backends(name: &str) -> Sandbox {
    let mut sb = Sandbox::new(name).unwrap();
    for (id, ip) in [("a", "127.0.0.2"), ("b", "127.0.0.3"), ("c", "127.0.0.4")] {
        sb.spawn_testsrv(id, &[&format!("{ip}:7000")], &[]).unwrap();
    }
    sb
}

/// The l4lb programs attached to the sandbox cgroup, by name.
fn attached(sb: &Sandbox) -> Vec<String> {
    sb.cgroup_programs().unwrap()
}

/// The hooks an agent started on `ALL` attached: every socket program.
fn started_with_every_hook(sb: &mut Sandbox) -> (Agent, Vec<String>) {
    let agent = Agent::start(sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    let hooks = attached(sb);
    assert_eq!(
        hooks.len(),
        l4lb_agent::datapath::SOCK_PROGRAMS.len(),
        "{hooks:?}"
    );
    (agent, hooks)
}

#[test]
fn sigkill_and_restart_twice_under_load_fails_no_connection() {
    require_root();
    let mut sb = with_backends("restart");
    let (mut agent, hooks) = started_with_every_hook(&mut sb);

    // 200 connections/s for 20 s through the VIP, while the agent dies twice.
    let load = sb
        .in_cgroup(probe_bin())
        .args([
            "tcp",
            "--to",
            "11.0.0.1:7000",
            "-n",
            "4000",
            "--interval-ms",
            "5",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    for round in 0..2 {
        thread::sleep(Duration::from_secs(3));
        agent
            .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
            .unwrap();
        // Nobody home: the pinned datapath keeps serving.
        thread::sleep(Duration::from_secs(2));
        assert_eq!(
            attached(&sb),
            hooks,
            "round {round}: hooks changed while the agent was dead"
        );
        agent = Agent::start(&mut sb, ALL).unwrap();
        agent.wait_vips(1, READY).unwrap();
        agent.wait_log("table applied", "the restarted agent's apply", READY);
        assert!(agent.log().contains("adopted the table"), "{}", agent.log());
        // The program inside each pinned link is replaced, no link is added.
        assert!(
            agent.log().contains(&format!(
                "updated={} attached=0 swept=0",
                l4lb_agent::datapath::SOCK_PROGRAMS.len()
            )),
            "{}",
            agent.log()
        );
        // Old links replaced, not duplicated.
        assert_eq!(attached(&sb), hooks, "round {round}: after restart");
    }
    let out = load.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "the load did not overlap the restarts"
    );
    assert_eq!(v["errors"], 0, "connections failed across restarts: {v}");
    let total: u64 = counts(&v).values().sum();
    assert_eq!(total, 4000, "{v}");

    // The adopted table equals the source, and an unchanged source rewrote nothing.
    let table = agent.vips_json().unwrap();
    let addrs: Vec<&str> = table[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["addr"].as_str().unwrap())
        .collect();
    assert_eq!(
        addrs,
        ["127.0.0.2:7000", "127.0.0.3:7000", "127.0.0.4:7000"],
        "{table}"
    );
    assert_eq!(
        table[0]["revision"], 0,
        "restarts must not rewrite an unchanged service: {table}"
    );
}

#[test]
fn a_restart_with_a_changed_source_applies_the_change() {
    require_root();
    let mut sb = with_backends("restart-change");
    let mut agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    let only_b = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.3:7000]\n  - vip: 11.0.0.2:7000\n    backends: [127.0.0.4:7000]\n";
    let agent = Agent::start(&mut sb, only_b).unwrap();
    agent.wait_vips(2, READY).unwrap();
    let v = sb.probe_tcp("11.0.0.1:7000", 50).unwrap();
    assert_eq!(v["counts"], serde_json::json!({"b": 50}), "{v}");
    let v = sb.probe_tcp("11.0.0.2:7000", 10).unwrap();
    assert_eq!(v["counts"], serde_json::json!({"c": 10}), "{v}");
}

/// A SIGKILL between unpinning the old links and renaming the new ones
/// (`<name>_new`) used to make the next start detach its own fresh links.
/// The pins are put in that state by hand: every hook must stay attached.
#[test]
fn a_start_after_a_kill_in_the_link_swap_keeps_every_hook() {
    require_root();
    let mut sb = with_backends("restart-swap");
    let (mut agent, hooks) = started_with_every_hook(&mut sb);
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    let links = sb.pin_root().join("links");
    for entry in std::fs::read_dir(&links).unwrap() {
        let path = entry.unwrap().path();
        let tmp = path.with_file_name(format!(
            "{}_new",
            path.file_name().unwrap().to_str().unwrap()
        ));
        std::fs::rename(&path, tmp).unwrap();
    }
    assert_eq!(attached(&sb), hooks, "renaming pins keeps the links");

    let agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_log("table applied", "the restarted agent's apply", READY);
    assert_eq!(attached(&sb), hooks, "after the restart:\n{}", agent.log());
    let mut names: Vec<String> = std::fs::read_dir(&links)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, hooks, "one pin per hook, no leftovers");
    let v = sb.probe_tcp("11.0.0.1:7000", 30).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
}

/// Waits up to 10 s for an agent that must refuse to start; returns its log.
fn refused(mut agent: Agent) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while agent.is_running() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let running = agent.is_running();
    // No teardown: the pins belong to the other agent (or the test).
    let status = agent.kill_no_teardown(libc::SIGKILL, Duration::from_secs(5));
    assert!(
        !running,
        "the agent did not refuse to start:\n{}",
        agent.log()
    );
    assert!(!status.unwrap().success());
    agent.log()
}

/// Two agents on one pin root used to corrupt each other's tables.
#[test]
fn a_second_agent_on_the_same_pin_root_is_refused() {
    require_root();
    let mut sb = with_backends("restart-lock");
    let first = Agent::start(&mut sb, ALL).unwrap();
    first.wait_vips(1, READY).unwrap();
    let other = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [127.0.0.4:7000]\n";
    let log = refused(Agent::start_with_args(&mut sb, other, &["--no-metrics"]).unwrap());
    let holder = format!(
        "another l4lb-agent (pid {}) is using the pin root",
        first.pid()
    );
    assert!(log.contains(&holder), "{log}");
    let v = sb.probe_tcp("11.0.0.1:7000", 30).unwrap();
    assert_eq!(
        v["counts"].as_object().unwrap().len(),
        3,
        "the first agent's table stays: {v}"
    );
    let out = std::process::Command::new(l4lb_tests::agent_bin())
        .args(["teardown", "--pin-root"])
        .arg(sb.pin_root())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "teardown under a running agent must be refused"
    );
}

/// `ABI_VERSION` used to be unused, so maps of another layout were adopted silently.
#[test]
fn pinned_maps_of_another_layout_are_refused() {
    require_root();
    let mut sb = with_backends("restart-abi");
    // A map of another shape where the backends map goes, under a record of
    // this agent's layout version (without one, pinned maps are taken as the
    // unrecorded layout 3 and refused for their version before any shape check).
    std::fs::create_dir(sb.pin_root()).unwrap();
    let meta = sb.pin_root().join("L4LB_META");
    run(std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&meta)
        .args([
            "type",
            "array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "1",
            "name",
            "L4LB_META",
        ]))
    .unwrap();
    let version = l4lb_common::ABI_VERSION
        .to_le_bytes()
        .map(|b| b.to_string());
    run(std::process::Command::new("bpftool")
        .args(["map", "update", "pinned"])
        .arg(&meta)
        .args([
            "key", "0", "0", "0", "0", "value", "0x41", "0x4c", "0x34", "0x4c",
        ])
        .args(&version))
    .unwrap();
    let backends_pin = sb.pin_root().join("L4LB_BACKENDS");
    run(std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&backends_pin)
        .args([
            "type",
            "hash",
            "key",
            "4",
            "value",
            "24",
            "entries",
            "16",
            "name",
            "L4LB_BACKENDS",
        ]))
    .unwrap();
    let log = refused(Agent::start(&mut sb, ALL).unwrap());
    assert!(
        log.contains("L4LB_BACKENDS has (type, key size, value size)")
            && log.contains("l4lb-agent teardown"),
        "{log}"
    );
    std::fs::remove_file(&backends_pin).unwrap();

    // A recorded layout version that is not this agent's.
    let mut agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    // AbiRecord { magic: "L4LA", abi_version: 99 }, little-endian.
    run(std::process::Command::new("bpftool")
        .args(["map", "update", "pinned"])
        .arg(&meta)
        .args([
            "key", "0", "0", "0", "0", "value", "0x41", "0x4c", "0x34", "0x4c", "99", "0", "0", "0",
        ]))
    .unwrap();
    let log = refused(Agent::start(&mut sb, ALL).unwrap());
    assert!(
        log.contains("have layout version 99, this agent writes version"),
        "{log}"
    );

    // The teardown that advice names leaves nothing of the older layout,
    // maps this layout no longer has included.
    let retired = sb.pin_root().join(l4lb_common::RETIRED_MAPS[0]);
    run(std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&retired)
        .args([
            "type", "array", "key", "4", "value", "8", "entries", "1", "name", "L4LB_OLD",
        ]))
    .unwrap();
    run(std::process::Command::new(l4lb_tests::agent_bin())
        .args(["teardown", "--pin-root"])
        .arg(sb.pin_root()))
    .unwrap();
    assert!(!sb.pin_root().exists(), "the pin root is gone");
}

/// bpffs is world-writable, so any user could pre-create the pin root (and
/// plant pins in it) for the agent to adopt.
#[test]
fn a_pin_root_someone_else_could_write_is_refused() {
    require_root();
    let mut sb = with_backends("restart-pinroot");
    std::fs::create_dir(sb.pin_root()).unwrap();
    std::os::unix::fs::chown(sb.pin_root(), Some(65534), Some(65534)).unwrap();
    let log = refused(Agent::start(&mut sb, ALL).unwrap());
    assert!(log.contains("is owned by uid 65534"), "{log}");

    std::os::unix::fs::chown(sb.pin_root(), Some(0), Some(0)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.pin_root(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = refused(Agent::start(&mut sb, ALL).unwrap());
    assert!(log.contains("writable by group or others"), "{log}");

    std::fs::remove_dir(sb.pin_root()).unwrap();
    let agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(sb.pin_root()).unwrap().mode() & 0o777,
        0o700
    );
}

/// A SIGKILL mid-apply leaves members written and the Maglev table not
/// switched; adoption used to trust the members, so the stale table stayed
/// (no connection reached the new backend). The pins are put in that
/// state by hand: weights a:1 b:0 → a:0 b:1 written, the table still all a.
#[test]
fn a_table_left_stale_by_a_kill_mid_apply_is_rewritten_at_adoption() {
    require_root();
    let mut sb = with_backends("restart-stale");
    let a_only = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [{addr: 127.0.0.2:7000, weight: 1}, {addr: 127.0.0.3:7000, weight: 0}]\n";
    let b_only = "vips:\n  - vip: 11.0.0.1:7000\n    backends: [{addr: 127.0.0.2:7000, weight: 0}, {addr: 127.0.0.3:7000, weight: 1}]\n";
    let mut agent = Agent::start(&mut sb, a_only).unwrap();
    agent.wait_vips(1, READY).unwrap();
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    // Service 0; backends by address: 127.0.0.2 = 1, 127.0.0.3 = 2.
    let members = sb.pin_root().join("L4LB_MEMBERS");
    for (backend, weight) in [("1", "0"), ("2", "1")] {
        run(std::process::Command::new("bpftool")
            .args(["map", "update", "pinned"])
            .arg(&members)
            .args([
                "key", "0", "0", "0", "0", backend, "0", "0", "0", "value", weight, "0", "0", "0",
                "0", "0", "0", "0",
            ]))
        .unwrap();
    }
    let agent = Agent::start(&mut sb, b_only).unwrap();
    agent.wait_log("table applied", "the restarted agent's apply", READY);
    let v = sb.probe_tcp("11.0.0.1:7000", 40).unwrap();
    assert_eq!(v["counts"], serde_json::json!({"b": 40}), "{v}");
    assert!(
        agent.log().contains("pinned table inconsistent, rewriting"),
        "{}",
        agent.log()
    );
    let (_, metrics) = sb.agent_http("/metrics");
    assert!(metrics.contains("l4lb_table_repairs_total 1"), "{metrics}");
}

/// A pinned link on another cgroup (the operator changed `--cgroup`) cannot
/// be updated in place: a new link is attached to the new cgroup and renamed
/// over the old pin, which detaches the old one.
#[test]
fn a_restart_on_another_cgroup_moves_the_hooks() {
    require_root();
    let mut sb = with_backends("restart-move");
    let mut agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    let hooks = attached(&sb);
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();

    // A child of the sandbox's own cgroup, removed below.
    let moved = sb.cgroup().join("moved");
    std::fs::create_dir(&moved).unwrap();
    let config = sb.workdir().join("moved.yaml");
    std::fs::write(&config, ALL).unwrap();
    let log_path = sb.workdir().join("moved.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = sb.in_netns(l4lb_tests::agent_bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--cgroup")
        .arg(&moved)
        .arg("--pin-root")
        .arg(sb.pin_root())
        .arg("--no-metrics")
        .env("L4LB_FORBID_ROOT_CGROUP", "1")
        .env("L4LB_FORBID_HOST_NETNS", "1")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let pid = sb.spawn(cmd).unwrap();
    let deadline = Instant::now() + READY;
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !read().contains("table applied") {
        assert!(Instant::now() < deadline, "no apply:\n{}", read());
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        read().contains(&format!(
            "updated=0 attached={} swept=0",
            l4lb_agent::datapath::SOCK_PROGRAMS.len()
        )),
        "{}",
        read()
    );
    assert_eq!(
        attached(&sb),
        Vec::<String>::new(),
        "the old cgroup's hooks are detached"
    );
    let out = run(std::process::Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(&moved))
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    names.sort();
    assert_eq!(names, hooks, "the hooks are on the new cgroup");
    sb.kill(pid).unwrap();
    std::fs::remove_dir(&moved).unwrap();
}

/// A plan of many services is written a chunk of services at a time, kind
/// by kind (`datapath/chunk.rs`): 600 VIPs span three chunks. Each VIP
/// serves its own backends on both sides of a chunk's edge, and the table
/// a restarted agent adopts checks clean (no repair).
#[test]
fn services_written_in_chunks_serve_and_adopt_clean() {
    require_root();
    let mut sb = with_backends("restart-chunks");
    let mut yaml = String::from("vips:\n");
    for i in 0..600u32 {
        let pair = match i % 2 {
            0 => "127.0.0.2:7000, 127.0.0.3:7000",
            _ => "127.0.0.3:7000, 127.0.0.4:7000",
        };
        yaml += &format!(
            "  - vip: 198.18.{}.{}:7000\n    backends: [{pair}]\n",
            i / 200,
            i % 200 + 1
        );
    }
    let mut agent = Agent::start(&mut sb, &yaml).unwrap();
    agent.wait_vips(600, READY).unwrap();
    let check = |sb: &Sandbox| {
        // The first and last VIP, and both sides of the chunks' edges.
        for i in [0u32, 255, 256, 511, 512, 599] {
            let vip = format!("198.18.{}.{}:7000", i / 200, i % 200 + 1);
            let v = sb.probe_tcp(&vip, 30).unwrap();
            let want: &[&str] = if i % 2 == 0 { &["a", "b"] } else { &["b", "c"] };
            let got = v["counts"].as_object().unwrap();
            assert!(
                !got.is_empty() && got.keys().all(|k| want.contains(&k.as_str())),
                "{vip}: {v}"
            );
        }
    };
    check(&sb);
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    let agent = Agent::start(&mut sb, &yaml).unwrap();
    agent.wait_log("table applied", "the restarted agent's apply", READY);
    check(&sb);
    assert!(
        !agent.log().contains("pinned table inconsistent"),
        "{}",
        agent.log()
    );
    let (_, metrics) = sb.agent_http("/metrics");
    assert!(metrics.contains("l4lb_table_repairs_total 0"), "{metrics}");
}

/// TCP connects through every VIP, from the `stats` command's JSON.
fn connects(sb: &Sandbox) -> u64 {
    let out = sb
        .in_netns(l4lb_tests::agent_bin())
        .args(["stats", "--json", "--pin-root"])
        .arg(sb.pin_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    stats["connects"].as_u64().unwrap()
}

/// The counter arrays hold a record per (id, CPU), `id * CPUs + cpu`: a
/// pinned one sized for another CPU count is made anew (its counts start
/// from zero) instead of being read and written with the wrong stride.
#[test]
fn a_counter_map_of_another_size_is_made_anew() {
    require_root();
    let mut sb = with_backends("restart-cpus");
    let mut agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    sb.probe_tcp("11.0.0.1:7000", 5).unwrap();
    assert_eq!(connects(&sb), 5);
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    let pin = sb.pin_root().join(l4lb_common::SERVICE_STATS_MAP);
    std::fs::remove_file(&pin).unwrap();
    let value = size_of::<l4lb_common::ServiceStats>().to_string();
    run(std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&pin)
        .args(["type", "array", "key", "4", "value", &value, "entries", "3"])
        .args(["name", "L4LB_SVC_STATS", "flags", "1024"]))
    .unwrap();
    let agent = Agent::start(&mut sb, ALL).unwrap();
    agent.wait_vips(1, READY).unwrap();
    assert!(agent.log().contains("made anew"), "{}", agent.log());
    sb.probe_tcp("11.0.0.1:7000", 7).unwrap();
    assert_eq!(connects(&sb), 7);
}
