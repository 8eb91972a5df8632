//! The seed tutorial's catalog, for tests (here and in the agent) and fuzzing.
use std::{collections::BTreeSet, net::SocketAddr, sync::Arc};

use crate::model::{Catalog, DesiredState, Proto, ServiceSpec, TaskPort, TaskRecord, Vip};

pub const REDIS_TASK_ID: &str =
    "redis-tutorial.instance-6f1c0b1e-8e2a-11ea-9c1d-0242ac110002._app.1";

/// The seed tutorial's shape: Marathon app `/redis-tutorial` on host
/// networking, one running task with port 31256 named `redis`, plus a
/// named VIP `/redis:6379`. Addresses are loopback: nothing is contacted.
pub fn redis_catalog() -> (Catalog, BTreeSet<Vip>) {
    let task = TaskRecord {
        app_id: "/redis-tutorial".into(),
        task_id: REDIS_TASK_ID.into(),
        framework: "marathon".into(),
        agent_id: "5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S1".into(),
        agent_ip: Some("127.0.1.11".parse().unwrap()),
        task_ips: vec!["127.0.1.11".parse().unwrap()],
        ports: vec![TaskPort {
            port: 31256,
            protocols: vec![Proto::Tcp],
            name: Some("redis".into()),
        }],
        host_ports: true,
        running: true,
        healthy: None,
        in_pod: false,
    };
    let vip = Vip {
        addr: "11.22.130.195:6379".parse().unwrap(),
        proto: Proto::Tcp,
    };
    let mut services = DesiredState::default();
    services.services.insert(
        vip,
        ServiceSpec {
            name: Some("/redis:6379".into()),
            framework: None,
            origin: None,
            backends: [("127.0.1.11:31256".parse::<SocketAddr>().unwrap(), 1)].into(),
        },
    );
    let catalog = Catalog {
        services,
        tasks: vec![Arc::new(task)],
        cluster: None,
    };
    (catalog, [vip].into())
}
