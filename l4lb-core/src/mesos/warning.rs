//! What decoding and applying skipped, for the log and the counters: each
//! warning names its subject (`task <id> by <framework id>`, `agent <id>`).

use std::fmt;

/// Which counter a warning feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    /// A task that could not be read at all: skipped.
    SkippedTask,
    /// One field of a task could not be derived: it keeps its last value
    /// (dcos-net's rule), the rest of the task is used.
    TaskField,
    /// An agent without an id, or one that could not be read: skipped.
    SkippedAgent,
    /// An agent whose host name is neither an address nor a valid name.
    AgentHost,
    /// An agent whose fault domain's zone could not be read: no zone.
    AgentZone,
    /// A framework without an id, or one that could not be read: skipped.
    SkippedFramework,
    /// A message of a type this decoder does not know: ignored.
    UnknownMessage,
}

impl WarningKind {
    /// The counter's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::SkippedTask => "skipped_task",
            WarningKind::TaskField => "task_field",
            WarningKind::SkippedAgent => "skipped_agent",
            WarningKind::AgentHost => "agent_host",
            WarningKind::AgentZone => "agent_zone",
            WarningKind::SkippedFramework => "skipped_framework",
            WarningKind::UnknownMessage => "unknown_message",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    /// Who: `task web.1 by <framework id>`, `agent <id>`, `framework <id>`.
    pub subject: String,
    pub what: String,
}

impl Warning {
    pub fn new(kind: WarningKind, subject: impl Into<String>, what: impl Into<String>) -> Self {
        Warning {
            kind,
            subject: subject.into(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.what)
    }
}
