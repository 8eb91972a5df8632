//! The benchmarks' cluster shape, shared by `cargo xtask bench` and the
//! examples that measure one stage of it (`tests/examples/`): N apps x M
//! healthy tasks, spread over 250 agent hosts (127.1.0.1 ..= 127.1.0.250,
//! never connected to), each task with a host port that makes (host, port)
//! unique, each app with the VIP `/app-<i>:80`.
use serde_json::{Value, json};

use crate::{TaskSpec, marathon::model};

/// Agent hosts the tasks are spread over.
pub const AGENT_HOSTS: u32 = 250;

/// The agent host of task number `b` (unique over the whole state).
pub fn host_of(b: u32) -> String {
    format!("127.1.0.{}", b % AGENT_HOSTS + 1)
}

/// The host port of task number `b`.
pub fn port_of(b: u32) -> u16 {
    (20_000 + b / AGENT_HOSTS) as u16
}

/// Task number `b`: a healthy task on `host_of(b)`, port `port_of(b)`.
pub fn task_spec(b: u32) -> TaskSpec {
    TaskSpec::new(&host_of(b), port_of(b)).alive(Some(true))
}

/// `{"apps": [/app-0 … /app-(n-1)]}`, `tasks` healthy tasks each: what
/// `GET /v2/apps?embed=apps.tasks` answers.
pub fn marathon_apps(apps: u32, tasks: u32) -> Value {
    let list: Vec<Value> = (0..apps)
        .map(|i| {
            let specs: Vec<TaskSpec> = (0..tasks).map(|j| task_spec(i * tasks + j)).collect();
            model::host_app(&format!("/app-{i}"), &format!("/app-{i}:80"), &specs, true)
        })
        .collect();
    json!({ "apps": list })
}

/// The calling thread's CPU time, s: what the examples time a stage by (the
/// machine is shared, so wall time would be other load's).
pub fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_has_its_own_host_and_port() {
        assert_ne!((host_of(0), port_of(0)), (host_of(250), port_of(250)));
        assert_eq!(host_of(249), "127.1.0.250");
    }
}
