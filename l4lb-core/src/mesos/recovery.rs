//! A master just elected lists the agents it knows from its registry as
//! `recovered_agents`, and no framework or task of theirs until they
//! re-register (AGENT_ADDED, then FRAMEWORK_ADDED and TASK_ADDED follow;
//! dcos-net's `recovered-agents.json`). Taken alone, its SUBSCRIBED would
//! withdraw every backend for the length of the failover. So the tasks the
//! last catalog showed on those agents are carried over, each until its
//! agent re-registers or is removed (the caller also bounds the wait).
use super::{MesosState, TaskKey, TaskView};

/// Tasks of the previous connection on agents still recovering.
#[derive(Clone, Debug, Default)]
pub struct Carried(Vec<(TaskKey, TaskView)>);

impl Carried {
    /// The tasks of `last` (the tasks last shown) whose agent `state`
    /// lists as recovering.
    pub fn from_last(last: &[(TaskKey, TaskView)], state: &MesosState) -> Carried {
        let on_recovering = |(_, v): &&(TaskKey, TaskView)| state.is_recovering(&v.agent_id);
        Carried(last.iter().filter(on_recovering).cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tasks to show: `state`'s, then each carried task whose agent
    /// still recovers and that `state` does not hold itself.
    pub fn with_state(&self, state: &MesosState) -> Vec<(TaskKey, TaskView)> {
        let mut tasks: Vec<(TaskKey, TaskView)> =
            state.tasks().map(|(k, v)| (k.clone(), v)).collect();
        let held: std::collections::BTreeSet<TaskKey> =
            tasks.iter().map(|(k, _)| k.clone()).collect();
        let carried = self
            .0
            .iter()
            .filter(|(k, v)| state.is_recovering(&v.agent_id) && !held.contains(k));
        tasks.extend(carried.cloned());
        tasks
    }
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
