//! Crash consistency: the agent is SIGKILLed at many points of
//! its start-up (load, adoption, link replacement, first apply) and of applies
//! triggered by config changes. After every kill every socket hook
//! (`SOCK_PROGRAMS`) is still attached to the cgroup; a normal start then finds every table equal
//! to its members (`l4lb-agent verify`) and every VIP reaches exactly its
//! live backends.
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{Agent, Sandbox, agent_bin, require_root};
use serde_json::Value;

const SERVICES: usize = 200;
const BACKENDS: [(&str, &str); 3] = [
    ("a", "127.0.0.2:7000"),
    ("b", "127.0.0.3:7000"),
    ("c", "127.0.0.4:7000"),
];
const START_KILLS: u32 = 20;
const APPLY_KILLS: u32 = 16;
const READY: Duration = Duration::from_secs(30);
/// The whole kill loop stops by itself after this.
const BUDGET: Duration = Duration::from_secs(240);

fn vip(i: usize) -> String {
    format!("11.0.{}.{}:7000", i / 250, i % 250 + 1)
}

/// Service `i`'s live backends (indexes into BACKENDS) in variant `v`.
fn live(i: usize, v: usize) -> Vec<usize> {
    const SETS: [&[usize]; 7] = [&[0], &[1], &[2], &[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]];
    SETS[(i + v) % SETS.len()].to_vec()
}

/// Variant `v` of the table: odd variants add the other backends at weight 0.
fn table(v: usize) -> String {
    let mut y = String::from("vips:\n");
    for i in 0..SERVICES {
        let on = live(i, v);
        let mut bs: Vec<String> = on
            .iter()
            .map(|b| format!("{{addr: {}, weight: 1}}", BACKENDS[*b].1))
            .collect();
        if v % 2 == 1 {
            bs.extend(
                (0..3)
                    .filter(|b| !on.contains(b))
                    .map(|b| format!("{{addr: {}, weight: 0}}", BACKENDS[b].1)),
            );
        }
        y += &format!("  - vip: {}\n    backends: [{}]\n", vip(i), bs.join(", "));
    }
    y
}

fn hooks_all_attached(sb: &Sandbox, when: &str) {
    let names = sb.cgroup_programs().unwrap();
    let mut want: Vec<String> = l4lb_agent::datapath::SOCK_PROGRAMS
        .map(String::from)
        .to_vec();
    want.sort();
    assert_eq!(
        names, want,
        "{when}: the hooks must stay attached, once each"
    );
}

/// `l4lb-agent verify`: (exit ok, report).
fn verify(sb: &Sandbox) -> (bool, Value) {
    let out = Command::new(agent_bin())
        .arg("verify")
        .arg("--pin-root")
        .arg(sb.pin_root())
        .arg("--cgroup")
        .arg(sb.cgroup())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), report)
}

/// Starts an agent and waits for its first apply; returns it and how long
/// after the start the hooks were in place and the table applied.
fn start_applied(sb: &mut Sandbox, yaml: &str) -> (Agent, Duration, Duration) {
    let t = Instant::now();
    let agent = Agent::start(sb, yaml).unwrap();
    let mut hooked = None;
    while !agent.log().contains("table applied") {
        assert!(t.elapsed() < READY, "no apply:\n{}", agent.log());
        if hooked.is_none() && agent.log().contains("socket hooks attached") {
            hooked = Some(t.elapsed());
        }
        thread::sleep(Duration::from_millis(2));
    }
    let applied = t.elapsed();
    (agent, hooked.unwrap_or(applied), applied)
}

fn kill(mut agent: Agent) -> bool {
    agent
        .kill_no_teardown(libc::SIGKILL, Duration::from_secs(5))
        .unwrap();
    agent.log().contains("pinned table inconsistent")
}

#[test]
fn sigkill_at_many_points_of_start_and_apply_leaves_a_consistent_datapath() {
    require_root();
    let mut sb = Sandbox::new("crash").unwrap();
    for (id, addr) in BACKENDS {
        sb.spawn_testsrv(id, &[addr], &[]).unwrap();
    }
    let deadline = Instant::now() + BUDGET;
    let (agent, _, _) = start_applied(&mut sb, &table(0));
    kill(agent);
    // A restart that adopts and changes the table: how long its phases take.
    let (agent, hooked, start_time) = start_applied(&mut sb, &table(1));
    kill(agent);
    let mut variant = 1;
    let (mut stale_after_kill, mut repaired_at_start, mut kills) = (0, 0, 0);

    // Kills spread over a whole start-up (which adopts and applies a change),
    // half of them in the 100 ms before the hooks are reported in place (the
    // link replacement, then the packet programs' verification).
    let window = Duration::from_millis(100).min(hooked);
    for k in 0..START_KILLS {
        if Instant::now() > deadline {
            break;
        }
        variant += 1;
        let agent = Agent::start(&mut sb, &table(variant)).unwrap();
        thread::sleep(match k % 2 {
            0 => start_time * k / START_KILLS,
            _ => hooked - window + window * k / START_KILLS,
        });
        repaired_at_start += usize::from(kill(agent));
        kills += 1;
        hooks_all_attached(&sb, &format!("start-up kill {k}"));
        stale_after_kill += usize::from(!verify(&sb).0);
    }
    // Kills during applies triggered by a config change (debounced 150 ms).
    for k in 0..APPLY_KILLS {
        if Instant::now() > deadline {
            break;
        }
        let (agent, _, _) = start_applied(&mut sb, &table(variant));
        variant += 1;
        agent.rewrite_config(&table(variant)).unwrap();
        thread::sleep(Duration::from_millis(130 + 8 * u64::from(k)));
        repaired_at_start += usize::from(kill(agent));
        kills += 1;
        hooks_all_attached(&sb, &format!("apply kill {k}"));
        stale_after_kill += usize::from(!verify(&sb).0);
    }
    eprintln!(
        "crash: {kills} kills (hooks in place after {hooked:?}, start-up took {start_time:?}); \
         {stale_after_kill} left the maps inconsistent, {repaired_at_start} starts repaired a table"
    );
    assert!(kills >= 30, "only {kills} kills within {BUDGET:?}");

    let (agent, _, _) = start_applied(&mut sb, &table(variant));
    hooks_all_attached(&sb, "after a normal start");
    let (ok, report) = verify(&sb);
    assert!(ok, "verify: {report:#}\n{}", agent.log());
    assert_eq!(report["services"], SERVICES, "{report}");
    for i in (0..SERVICES).step_by(10) {
        let mut want: Vec<&str> = live(i, variant).iter().map(|b| BACKENDS[*b].0).collect();
        want.sort();
        let got = sb.reach_each(&vip(i), &want, 40).unwrap();
        assert_eq!(
            got.iter().map(String::as_str).collect::<Vec<_>>(),
            want,
            "{}",
            vip(i)
        );
    }
}
