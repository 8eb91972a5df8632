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
        task_id: REDIS_TASK_ID.into(),
        agent_id: "5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S1".into(),
        agent_ip: Some("127.0.1.11".parse().unwrap()),
        task_ips: ["127.0.1.11".parse().unwrap()].into(),
        ports: vec![redis_port(31256, &[Proto::Tcp])].into(),
        host_ports: true,
        ..redis_task()
    };
    let backend = "127.0.1.11:31256".parse::<SocketAddr>().unwrap();
    with_redis_vip(vec![Arc::new(task)], [(backend, 1)].into())
}

/// `instances` tasks of `/redis-tutorial` in every shape the zones tell
/// apart: dual-stack task addresses, a TCP+UDP port, every other task on
/// host ports; the VIP without backends. For the fuzz targets (60 of them
/// make an A answer that needs TCP).
pub fn redis_instances(instances: u8) -> (Catalog, BTreeSet<Vip>) {
    let tasks = (0..instances)
        .map(|i| {
            Arc::new(TaskRecord {
                task_id: format!("redis-tutorial.instance-{i}._app.1").into(),
                agent_id: format!("5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S{i}").into(),
                agent_ip: Some(format!("127.0.1.{i}").parse().unwrap()),
                task_ips: vec![
                    format!("127.0.2.{i}").parse().unwrap(),
                    format!("fd00::{i}").parse().unwrap(),
                ]
                .into(),
                ports: vec![redis_port(31000 + u16::from(i), &[Proto::Tcp, Proto::Udp])].into(),
                host_ports: i % 2 == 0,
                ..redis_task()
            })
        })
        .collect();
    with_redis_vip(tasks, Default::default())
}

/// What every redis task shares.
fn redis_task() -> TaskRecord {
    TaskRecord {
        app_id: "/redis-tutorial".into(),
        task_id: Box::default(),
        framework: "marathon".into(),
        agent_id: "".into(),
        agent_ip: None,
        task_ips: Box::default(),
        ports: Box::default(),
        host_ports: false,
        running: true,
        healthy: None,
        in_pod: false,
        zone: None,
    }
}

fn redis_port(port: u16, protocols: &[Proto]) -> TaskPort {
    TaskPort {
        port,
        protocols: protocols.into(),
        name: Some("redis".into()),
    }
}

/// The catalog of `tasks` with the named VIP `/redis:6379` at its dcos-net
/// address, published.
fn with_redis_vip(
    tasks: Vec<Arc<TaskRecord>>,
    backends: std::collections::BTreeMap<SocketAddr, u32>,
) -> (Catalog, BTreeSet<Vip>) {
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
            backends: backends.into(),
        },
    );
    let catalog = Catalog {
        services,
        tasks,
        ..Default::default()
    };
    (catalog, [vip].into())
}
