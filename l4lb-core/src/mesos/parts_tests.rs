//! Parts kept up to date change by change give the catalog a fresh build
//! gives; and they carry tasks over a master failover, on dcos-net's
//! `recovered-agents.json` (a new leader's SUBSCRIBED that knows its agent
//! only as recovered, then the agent re-registering with its tasks).
use super::*;
use crate::{
    hosts::HostTable,
    mesos::{catalog, decode_message, peer_tests::lines},
};

fn apply(st: &mut MesosState, line: &str) {
    st.apply(
        decode_message(line.as_bytes()).unwrap(),
        &HostTable::default(),
    );
}

fn fresh(st: &MesosState) -> crate::model::Catalog {
    let tasks: Vec<(TaskKey, TaskView)> = st.tasks().map(|(k, v)| (k.clone(), v)).collect();
    let mut alloc = VipAllocator::new();
    catalog::catalog(tasks.iter().map(|(k, v)| (k, v)), &mut alloc)
        .unwrap()
        .catalog
}

fn follow(parts: &mut TaskParts, st: &mut MesosState) -> crate::model::Catalog {
    let changes = st.take_changes();
    parts.follow(st, changes);
    parts
        .catalog(&mut VipAllocator::new())
        .unwrap()
        .fill()
        .catalog
}

/// Kept up to date message by message through [`MesosState::take_changes`],
/// the parts give the catalog a fresh build of the same state gives, on
/// every dcos-net stream fixture, after every message (and after host
/// tables that give the agent named `localhost` an address, then another).
#[test]
fn parts_follow_changes_to_the_same_catalog_as_a_fresh_build() {
    for name in crate::mesos::peer_tests::STREAMS {
        let mut st = MesosState::new();
        let mut parts = TaskParts::default();
        for (i, line) in lines(name).iter().enumerate() {
            let Ok(msg) = decode_message(line.as_bytes()) else {
                continue;
            };
            st.apply(msg, &HostTable::default());
            let kept = follow(&mut parts, &mut st);
            assert_eq!(kept, fresh(&st), "{name} after message {}", i + 1);
            assert_eq!(parts.len(), st.tasks().count(), "{name}");
        }
        for addr in ["198.18.0.77", "198.18.0.78"] {
            st.refresh_hosts(&HostTable::resolved([("localhost", addr.parse().unwrap())]));
            let kept = follow(&mut parts, &mut st);
            assert_eq!(kept, fresh(&st), "{name} with localhost at {addr}");
        }
    }
}

/// Only what a message touched is reported as changed.
#[test]
fn changes_name_only_the_tasks_touched() {
    let mut st = crate::mesos::peer_tests::stream("operator-api.json");
    st.take_changes();
    let Some((key, view)) = st.tasks().next().map(|(k, v)| (k.clone(), v)) else {
        panic!("no task")
    };
    let kill = format!(
        r#"{{"type":"TASK_UPDATED","task_updated":{{"framework_id":{{"value":"{}"}},"state":"TASK_KILLED","status":{{"task_id":{{"value":"{}"}},"agent_id":{{"value":"{}"}},"state":"TASK_KILLED","timestamp":9.0}}}}}}"#,
        key.framework_id, key.task_id, view.agent_id
    );
    apply(&mut st, &kill);
    assert_eq!(st.take_changes(), Changes::Tasks([key].into()));
    assert_eq!(st.take_changes(), Changes::Tasks(Default::default()));
}

/// The fixture's lines, and parts that followed all of them (the tasks a
/// master shows once everything registered).
fn before_failover() -> (Vec<String>, TaskParts, crate::model::Catalog) {
    let all = lines("recovered-agents.json");
    let mut st = MesosState::new();
    all.iter().for_each(|l| apply(&mut st, l));
    let mut parts = TaskParts::default();
    let shown = follow(&mut parts, &mut st);
    assert_eq!(parts.len(), 1, "the fixture's one running task");
    (all, parts, shown)
}

#[test]
fn a_new_leaders_recovered_agents_keep_their_last_tasks_until_they_re_register() {
    let (all, mut parts, shown) = before_failover();
    // The new leader's SUBSCRIBED: no task, the agent recovering.
    let mut st = MesosState::new();
    apply(&mut st, &all[0]);
    assert_eq!(st.tasks().count(), 0);
    assert_eq!(
        follow(&mut parts, &mut st),
        shown,
        "carried over the failover"
    );
    assert_eq!(parts.carried(), 1);
    // The agent re-registers: its own tasks replace the carried ones.
    all[1..].iter().for_each(|l| apply(&mut st, l));
    assert_eq!(follow(&mut parts, &mut st), shown);
    assert_eq!(parts.carried(), 0);
}

#[test]
fn an_agent_removed_while_recovering_takes_its_carried_tasks_along() {
    let (all, mut parts, _) = before_failover();
    let mut st = MesosState::new();
    apply(&mut st, &all[0]);
    follow(&mut parts, &mut st);
    let agent = parts.parts.values().next().unwrap().agent_id.clone();
    let removed = format!(
        r#"{{"type":"AGENT_REMOVED","agent_removed":{{"agent_id":{{"value":"{agent}"}}}}}}"#
    );
    apply(&mut st, &removed);
    assert!(follow(&mut parts, &mut st).tasks.is_empty());
    assert_eq!(parts.carried(), 0);
}

#[test]
fn the_end_of_the_wait_drops_what_is_carried() {
    let (all, mut parts, _) = before_failover();
    let mut st = MesosState::new();
    apply(&mut st, &all[0]);
    follow(&mut parts, &mut st);
    parts.drop_carried();
    assert!(parts.is_empty());
}

#[test]
fn a_subscribed_without_recovered_agents_carries_nothing() {
    let (_, mut parts, _) = before_failover();
    let mut again = MesosState::new();
    let snapshot =
        r#"{"type":"SUBSCRIBED","subscribed":{"get_state":{},"heartbeat_interval_seconds":15}}"#;
    apply(&mut again, snapshot);
    assert!(follow(&mut parts, &mut again).tasks.is_empty());
    assert_eq!(parts.carried(), 0);
}
