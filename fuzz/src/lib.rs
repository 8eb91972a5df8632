//! The fuzz targets' view of l4lb: the pure crate (l4lb-core), which needs
//! neither the eBPF build nor the agent's I/O dependencies.
pub use l4lb_core::{config, hosts, model, naming};

pub mod dns;
pub mod marathon;

use std::{collections::BTreeSet, sync::Arc};

use model::{Catalog, DesiredState, Proto, ServiceSpec, TaskPort, TaskRecord, Vip};

/// A catalog in the seed tutorial's shape with `instances` tasks of
/// `/redis-tutorial` (enough of them, the A answer needs TCP) and a named VIP.
pub fn sample_catalog(instances: u8) -> (Catalog, BTreeSet<Vip>) {
    let tasks = (0..instances)
        .map(|i| {
            Arc::new(TaskRecord {
                app_id: "/redis-tutorial".into(),
                task_id: format!("redis-tutorial.instance-{i}._app.1"),
                framework: "marathon".into(),
                agent_id: format!("5d5a0c9e-1b2f-4f0e-9d1c-3c2b1a0f9e8d-S{i}"),
                agent_ip: Some(format!("127.0.1.{i}").parse().unwrap()),
                task_ips: vec![
                    format!("127.0.2.{i}").parse().unwrap(),
                    format!("fd00::{i}").parse().unwrap(),
                ],
                ports: vec![TaskPort {
                    port: 31000 + u16::from(i),
                    protocols: vec![Proto::Tcp, Proto::Udp],
                    name: Some("redis".into()),
                }],
                host_ports: i % 2 == 0,
                running: true,
                healthy: None,
                in_pod: false,
            })
        })
        .collect();
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
            backends: Default::default(),
        },
    );
    (
        Catalog {
            services,
            tasks,
            cluster: None,
        },
        [vip].into(),
    )
}

/// A current-thread runtime with the timer, its clock paused: an open,
/// silent connection times out at once (virtually). Shared by the targets
/// that drive the event stream.
pub fn paused_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    })
}
