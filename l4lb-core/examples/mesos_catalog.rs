//! What one Mesos task event costs at 10,000 tasks, from the message to the
//! catalog, and the plan after it for reference.
//!
//! Builds a SUBSCRIBED snapshot of 10,000 running tasks (2,000 apps x 5 on
//! 250 agents, one named VIP per app, host-scope ports), follows it through
//! `MesosState` + `TaskParts` and times:
//! - the first catalog (every part merged) and the first plan;
//! - per event (a task killed, the same task added again, its health
//!   flipped), applying the message, `TaskParts::follow` + `catalog`, the
//!   catalog's copy of every service (`Built::fill`, made by the agent once
//!   the table serves), and the plan of the change against the previous
//!   table (`plan::changed_vips` + `plan::plan_change`, as the agent's
//!   reconciler plans it);
//! - the same snapshot again (a reconnect), follow + catalog;
//! - `VipAllocator::allocate` with all 2,000 names (what each catalog would
//!   cost if it asked the allocator every time).
//!
//! Run: `cargo run --release -p l4lb-core --example mesos_catalog`
//! (`ROUNDS=n` changes the number of kill/add/flip rounds, 100 by default).
use std::time::{Duration, Instant};

use l4lb_core::{
    hosts::HostTable,
    mesos::{MesosState, TaskParts, decode_message},
    naming::{Family, VipAllocator},
    plan,
};
use serde_json::{Value, json};

const TASKS: u32 = 10_000;
const AGENTS: u32 = 250;

fn task_id(b: u32) -> String {
    format!("app-{}.{b}", b / 5)
}

fn status(b: u32, state: &str, healthy: bool) -> Value {
    json!({"state": state, "timestamp": 1.0, "healthy": healthy,
        "task_id": {"value": task_id(b)}, "agent_id": {"value": format!("S{}", b % AGENTS)},
        "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": agent_ip(b)}]}]}})
}

fn agent_ip(b: u32) -> String {
    format!("198.18.{}.{}", b % AGENTS / 200, b % AGENTS % 200 + 1)
}

fn task(b: u32) -> Value {
    let app = b / 5;
    json!({"name": format!("app-{app}"), "task_id": {"value": task_id(b)},
      "framework_id": {"value": "fw"}, "agent_id": {"value": format!("S{}", b % AGENTS)},
      "state": "TASK_RUNNING", "statuses": [status(b, "TASK_RUNNING", true)],
      "discovery": {"name": format!("app-{app}"), "visibility": "FRAMEWORK", "ports": {"ports": [
        {"number": 20000 + b / AGENTS, "protocol": "tcp", "labels": {"labels": [
          {"key": "VIP_0", "value": format!("/app-{app}:80")},
          {"key": "network-scope", "value": "host"}]}}]}},
      "container": {"type": "MESOS"}})
}

fn subscribed() -> Value {
    let agents: Vec<Value> = (0..AGENTS)
        .map(|i| {
            json!({"agent_info": {"id": {"value": format!("S{i}")},
            "hostname": agent_ip(i), "port": 5051}, "active": true})
        })
        .collect();
    let tasks: Vec<Value> = (0..TASKS).map(task).collect();
    json!({"type": "SUBSCRIBED", "subscribed": {"heartbeat_interval_seconds": 15.0, "get_state": {
        "get_agents": {"agents": agents},
        "get_frameworks": {"frameworks": [{"framework_info": {"id": {"value": "fw"},
            "name": "marathon"}, "active": true}]},
        "get_tasks": {"tasks": tasks}}}})
}

fn updated(b: u32, state: &str, healthy: bool) -> Value {
    json!({"type": "TASK_UPDATED", "task_updated": {"framework_id": {"value": "fw"},
        "state": state, "status": status(b, state, healthy)}})
}

/// The three events of one round, on task `b`.
fn events(b: u32) -> [(&'static str, Value); 3] {
    [
        ("killed", updated(b, "TASK_KILLED", true)),
        (
            "added",
            json!({"type": "TASK_ADDED", "task_added": {"task": task(b)}}),
        ),
        ("unhealthy", updated(b, "TASK_RUNNING", false)),
    ]
}

struct Times(Vec<Duration>);

impl Times {
    fn summary(&mut self) -> String {
        if self.0.is_empty() {
            return "(none)".into();
        }
        self.0.sort();
        let at = |q: f64| self.0[((self.0.len() - 1) as f64 * q) as usize];
        format!(
            "min {:?} median {:?} p99 {:?} max {:?}",
            self.0[0],
            at(0.5),
            at(0.99),
            self.0[self.0.len() - 1]
        )
    }
}

fn main() {
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    let hosts = HostTable::default();
    let mut st = MesosState::new();
    let bytes = serde_json::to_vec(&subscribed()).unwrap();
    st.apply(decode_message(&bytes).unwrap(), &hosts);
    let mut alloc = VipAllocator::new();
    let mut parts = TaskParts::default();

    let t = Instant::now();
    let changes = st.take_changes();
    parts.follow(&st, changes);
    let first = parts.catalog(&mut alloc).unwrap();
    let mut last = first.services.clone().expect("an incremental catalog");
    println!(
        "first catalog: {:?} ({} services, {} tasks)",
        t.elapsed(),
        last.len(),
        first.catalog.tasks.len()
    );
    let cap = plan::Capacity {
        slots: 1 << 24,
        ..Default::default()
    };
    let t = Instant::now();
    let mut index = plan::Index::new(&plan::Applied::default(), cap);
    let mut applied = plan::plan_all_indexed(&plan::Applied::default(), &last, &mut index).next;
    index.commit();
    println!("first plan: {:?}", t.elapsed());

    let (mut apply, mut merge) = (Times(vec![]), Times(vec![]));
    let (mut fill, mut planned) = (Times(vec![]), Times(vec![]));
    for round in 0..rounds {
        let b = (round * 97) % TASKS;
        for (what, ev) in events(b) {
            let msg = serde_json::to_vec(&ev).unwrap();
            let t = Instant::now();
            st.apply(decode_message(&msg).unwrap(), &hosts);
            let t_apply = t.elapsed();
            let changes = st.take_changes();
            let t = Instant::now();
            parts.follow(&st, changes);
            let built = parts.catalog(&mut alloc).unwrap();
            let t_merge = t.elapsed();
            let services = built.services.clone().expect("an incremental catalog");
            let t = Instant::now();
            let changed = plan::changed_vips(&last, &services);
            let p = plan::plan_change(&applied, &services, &changed, &mut index);
            planned.0.push(t.elapsed());
            index.commit();
            applied = p.next;
            last = services;
            let t = Instant::now();
            let built = built.fill();
            fill.0.push(t.elapsed());
            apply.0.push(t_apply);
            merge.0.push(t_merge);
            // A killed task leaves the catalog until it is added again.
            let visible = TASKS - u32::from(what == "killed");
            assert_eq!(built.catalog.tasks.len() as u32, visible, "{what}");
        }
    }
    println!("{} events:", apply.0.len());
    println!("  decode + apply    {}", apply.summary());
    println!("  follow + catalog  {}", merge.summary());
    println!("  plan of a change  {}", planned.summary());
    println!("  catalog's copy    {}", fill.summary());

    // A reconnect: the same snapshot again, every task as it was.
    let again = subscribed();
    let t = Instant::now();
    st.apply(
        decode_message(&serde_json::to_vec(&again).unwrap()).unwrap(),
        &hosts,
    );
    let t_apply = t.elapsed();
    let t = Instant::now();
    let changes = st.take_changes();
    parts.follow(&st, changes);
    parts.catalog(&mut alloc).unwrap();
    println!(
        "same snapshot again: decode + apply {t_apply:?}, follow + catalog {:?}",
        t.elapsed()
    );

    let names = alloc.allocations(Family::V4).into_keys().collect();
    let mut times = Times(vec![]);
    for _ in 0..50 {
        let mut a = alloc.clone();
        let t = Instant::now();
        a.allocate(Family::V4, &names).unwrap();
        times.0.push(t.elapsed());
    }
    println!("allocate({} names)  {}", names.len(), times.summary());
}
