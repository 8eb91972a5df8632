//! Carrying tasks over a master failover, on dcos-net's
//! `recovered-agents.json` (a new leader's SUBSCRIBED that knows its agent
//! only as recovered, then the agent re-registering with its tasks).
use super::*;
use crate::{
    hosts::HostTable,
    mesos::{decode_message, peer_tests::lines},
};

fn apply(st: &mut MesosState, line: &str) {
    st.apply(
        decode_message(line.as_bytes()).unwrap(),
        &HostTable::default(),
    );
}

fn shown(st: &MesosState) -> Vec<(TaskKey, TaskView)> {
    st.tasks().map(|(k, v)| (k.clone(), v)).collect()
}

/// The fixture's lines and the tasks shown once all are applied.
fn fixture() -> (Vec<String>, Vec<(TaskKey, TaskView)>) {
    let all = lines("recovered-agents.json");
    let mut before = MesosState::new();
    all.iter().for_each(|l| apply(&mut before, l));
    let last = shown(&before);
    (all, last)
}

#[test]
fn a_new_leaders_recovered_agents_keep_their_last_tasks_until_they_re_register() {
    let (all, last) = fixture();
    assert_eq!(last.len(), 1, "the fixture's one running task");

    // The new leader's SUBSCRIBED: no task, the agent recovering.
    let mut st = MesosState::new();
    apply(&mut st, &all[0]);
    assert_eq!(st.tasks().count(), 0);
    let carried = Carried::from_last(&last, &st);
    assert_eq!(carried.with_state(&st), last, "carried over the failover");

    // The agent re-registers: its own tasks replace the carried ones.
    all[1..].iter().for_each(|l| apply(&mut st, l));
    assert!(!st.is_recovering(&last[0].1.agent_id));
    assert_eq!(carried.with_state(&st), shown(&st));
    assert_eq!(shown(&st), last);
}

#[test]
fn an_agent_removed_while_recovering_takes_its_carried_tasks_along() {
    let (all, last) = fixture();
    let mut st = MesosState::new();
    apply(&mut st, &all[0]);
    let agent = last[0].1.agent_id.clone();
    let removed = format!(
        r#"{{"type":"AGENT_REMOVED","agent_removed":{{"agent_id":{{"value":"{agent}"}}}}}}"#
    );
    apply(&mut st, &removed);
    assert!(Carried::from_last(&last, &st).is_empty());
}

#[test]
fn a_subscribed_without_recovered_agents_carries_nothing() {
    let (_, last) = fixture();
    let mut again = MesosState::new();
    let snapshot =
        r#"{"type":"SUBSCRIBED","subscribed":{"get_state":{},"heartbeat_interval_seconds":15}}"#;
    apply(&mut again, snapshot);
    assert!(Carried::from_last(&last, &again).is_empty());
}
