use l4lb_core::{dns::records::*, hosts::HostTable, mesos::*, naming::VipAllocator, plan};
use serde_json::json;
use std::time::Instant;

fn task(b: u32) -> serde_json::Value {
    let app = b / 5;
    let host = format!("127.1.0.{}", b % 250 + 1);
    json!({"name": format!("app-{app}"), "task_id": {"value": format!("app-{app}.{b}")},
      "framework_id": {"value": "fw"}, "agent_id": {"value": format!("S{}", b % 250)},
      "state": "TASK_RUNNING", "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0, "healthy": true,
        "task_id": {"value": format!("app-{app}.{b}")},
        "container_status": {"network_infos": [{"ip_addresses": [{"ip_address": host}]}]}}],
      "discovery": {"name": format!("app-{app}"), "visibility": "FRAMEWORK", "ports": {"ports": [
        {"number": 20000 + b / 250, "protocol": "tcp", "labels": {"labels": [
          {"key": "VIP_0", "value": format!("/app-{app}:80")}, {"key": "network-scope", "value": "host"}]}}]}},
      "container": {"type": "MESOS"}})
}

fn main() {
    let n = 10_000;
    let agents: Vec<_> = (0..250).map(|i| json!({"agent_info": {"id": {"value": format!("S{i}")}, "hostname": format!("127.1.0.{}", i + 1), "port": 5051}, "active": true})).collect();
    let tasks: Vec<_> = (0..n).map(task).collect();
    let sub = json!({"type": "SUBSCRIBED", "subscribed": {"heartbeat_interval_seconds": 15.0, "get_state": {
        "get_agents": {"agents": agents}, "get_frameworks": {"frameworks": [{"framework_info": {"id": {"value": "fw"}, "name": "marathon"}, "active": true}]},
        "get_tasks": {"tasks": tasks}}}});
    let bytes = serde_json::to_vec(&sub).unwrap();
    let t = Instant::now();
    let msg = decode_message(&bytes).unwrap();
    println!("decode {:?}", t.elapsed());
    let mut st = MesosState::new();
    let hosts = HostTable::default();
    let t = Instant::now();
    st.apply(msg, &hosts);
    println!("apply {:?}", t.elapsed());
    let mut alloc = VipAllocator::new();
    for _ in 0..3 {
        let t = Instant::now();
        let tasks: Vec<_> = st.tasks().map(|(k, v)| (k.clone(), v)).collect();
        println!("collect views {:?}", t.elapsed());
        let t = Instant::now();
        let built = catalog::catalog(tasks.iter().map(|(k, v)| (k, v)), &mut alloc).unwrap();
        println!("catalog {:?}", t.elapsed());
        let published = built.catalog.services.services.keys().copied().collect();
        let t = Instant::now();
        let z = build_zones(&built.catalog, &published, &ZoneOptions::default());
        println!("zones {:?} records {}", t.elapsed(), z.record_count());
        let t = Instant::now();
        let p = plan::plan(
            &plan::Applied::default(),
            &built.catalog.services,
            plan::Capacity {
                slots: 1 << 24,
                ..Default::default()
            },
        );
        println!("plan from empty {:?}", t.elapsed());
        let t = Instant::now();
        let p2 = plan::plan(
            &p.next,
            &built.catalog.services,
            plan::Capacity {
                slots: 1 << 24,
                ..Default::default()
            },
        );
        println!("plan same {:?} ops {}", t.elapsed(), p2.now.len());
        let t = Instant::now();
        let c2 = built.catalog.clone();
        println!("catalog clone {:?}", t.elapsed());
        drop(c2);
    }
}
