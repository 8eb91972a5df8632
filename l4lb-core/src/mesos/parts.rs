//! [`TaskParts`]: each visible task's part of the catalog, kept between
//! catalogs so that a change redoes only the tasks it touched, and merged
//! ([`IncrementalCatalog`]) so that it re-merges only the VIPs they declare
//! (records stay shared, `Arc` for `Arc`, with the previous catalog; by key,
//! so the catalog's task order does not depend on the order changes came in).
//!
//! Kept across connections, they also carry a master failover: a master
//! just elected lists the agents it knows from its registry as
//! `recovered_agents`, and no framework or task of theirs until they
//! re-register (AGENT_ADDED, then FRAMEWORK_ADDED and TASK_ADDED follow;
//! dcos-net's `recovered-agents.json`). Taken alone, its SUBSCRIBED would
//! withdraw every backend for the length of the failover. So the parts of
//! tasks on those agents are carried over, each until its agent re-registers
//! or is removed (the caller also bounds the wait: [`TaskParts::drop_carried`]).
use std::collections::{BTreeMap, BTreeSet};

use super::{
    Changes, MesosState, TaskKey, TaskView,
    catalog::{Built, built, task_part},
};
use crate::marathon::parse::IncrementalCatalog;
use crate::naming::{NamingError, VipAllocator};

#[derive(Clone, Debug)]
struct Part {
    /// Its task's agent, for the carry-over.
    agent_id: String,
}

#[derive(Clone, Debug, Default)]
pub struct TaskParts {
    /// The tasks that have a part.
    parts: BTreeMap<TaskKey, Part>,
    /// The parts, merged change by change.
    merged: IncrementalCatalog<TaskKey>,
    /// Parts of the previous connection on agents still recovering.
    carried: BTreeSet<TaskKey>,
}

impl TaskParts {
    /// `key`'s part from its view; `None` removes it (gone or held).
    pub fn set(&mut self, key: &TaskKey, view: Option<&TaskView>) {
        match view {
            Some(v) => {
                let agent_id = v.agent_id.clone();
                self.parts.insert(key.clone(), Part { agent_id });
                self.merged.replace(key.clone(), Some(task_part(key, v)));
            }
            None => {
                self.parts.remove(key);
                self.merged.replace(key.clone(), None);
            }
        }
    }

    /// Brings the parts up to date with `changes` of `state`. After a
    /// snapshot (`Changes::All`), the parts of tasks on agents `state` lists
    /// as recovering stay, carried, unless `state` holds the task itself.
    pub fn follow(&mut self, state: &MesosState, changes: Changes) {
        match changes {
            Changes::All => {
                self.carried.clear();
                let mut gone: BTreeSet<TaskKey> = self.parts.keys().cloned().collect();
                for (k, v) in state.tasks() {
                    gone.remove(k);
                    self.set(k, Some(&v));
                }
                for k in gone {
                    if state.is_recovering(&self.parts[&k].agent_id) {
                        self.carried.insert(k);
                    } else {
                        self.set(&k, None);
                    }
                }
            }
            Changes::Tasks(keys) => {
                for k in keys {
                    match state.view(&k) {
                        Some(v) => {
                            self.carried.remove(&k);
                            self.set(&k, Some(&v));
                        }
                        None if self.carried.contains(&k) => {}
                        None => self.set(&k, None),
                    }
                }
            }
        }
        // Agents that re-registered or were removed take their carried
        // tasks along (re-registered ones list theirs themselves).
        let done: Vec<TaskKey> = self
            .carried
            .iter()
            .filter(|k| !state.is_recovering(&self.parts[*k].agent_id))
            .cloned()
            .collect();
        for k in done {
            self.carried.remove(&k);
            let view = state.view(&k);
            self.set(&k, view.as_ref());
        }
    }

    /// The recovery wait is over: carried parts go.
    pub fn drop_carried(&mut self) {
        for k in std::mem::take(&mut self.carried) {
            self.set(&k, None);
        }
    }

    /// How many parts are carried over a failover.
    pub fn carried(&self) -> usize {
        self.carried.len()
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The catalog of the parts; only what changed since the last one is
    /// merged again. Its services are in `Built::services` only (the
    /// catalog's copy is the caller's to make: [`Built::fill`]).
    pub fn catalog(&mut self, alloc: &mut VipAllocator) -> Result<Built, NamingError> {
        built(self.merged.catalog_map(alloc))
    }
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "parts_merge_tests.rs"]
mod merge_tests;
