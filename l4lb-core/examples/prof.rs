use l4lb_core::{hosts::HostTable, mesos::*, naming::VipAllocator, plan};
use serde_json::json;
use std::time::Instant;

fn task(b: u32, healthy: bool) -> serde_json::Value {
    let app = b / 5;
    let host = format!("127.1.0.{}", b % 250 + 1);
    json!({"name": format!("app-{app}"), "task_id": {"value": format!("app-{app}.{b}")},
      "framework_id": {"value": "fw"}, "agent_id": {"value": format!("S{}", b % 250)},
      "state": "TASK_RUNNING", "statuses": [{"state": "TASK_RUNNING", "timestamp": 1.0, "healthy": healthy,
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
    let tasks: Vec<_> = (0..n).map(|b| task(b, true)).collect();
    let sub = json!({"type": "SUBSCRIBED", "subscribed": {"heartbeat_interval_seconds": 15.0, "get_state": {
        "get_agents": {"agents": agents}, "get_frameworks": {"frameworks": [{"framework_info": {"id": {"value": "fw"}, "name": "marathon"}, "active": true}]},
        "get_tasks": {"tasks": tasks}}}});
    let bytes = serde_json::to_vec(&sub).unwrap();
    let mut st = MesosState::new();
    let hosts = HostTable::default();
    st.apply(decode_message(&bytes).unwrap(), &hosts);
    let mut alloc = VipAllocator::new();
    let mut parts = TaskParts::default();
    let ch = st.take_changes();
    parts.follow(&st, ch);
    let cap = plan::Capacity {
        slots: 1 << 24,
        ..Default::default()
    };
    let first = parts.catalog(&mut alloc).unwrap();
    let mut applied = plan::plan(&plan::Applied::default(), &first.catalog.services, cap).next;
    for i in 0..5 {
        let ev = json!({"type": "TASK_ADDED", "task_added": {"task": task(i * 7, i % 2 == 0)}});
        let t = Instant::now();
        st.apply(
            decode_message(&serde_json::to_vec(&ev).unwrap()).unwrap(),
            &hosts,
        );
        let ch = st.take_changes();
        parts.follow(&st, ch);
        let t1 = t.elapsed();
        let built = parts.catalog(&mut alloc).unwrap();
        let t2 = t.elapsed();
        let eq = Some(&first.catalog) == Some(&built.catalog);
        let t3 = t.elapsed();
        let c2 = built.catalog.clone();
        let t4 = t.elapsed();
        let p = plan::plan(&applied, &built.catalog.services, cap);
        let t5 = t.elapsed();
        applied = p.next;
        println!(
            "follow {t1:?} catalog {:?} eq {:?} clone {:?} plan {:?} ({eq}, {} ops)",
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t5 - t4,
            p.now.len()
        );
        drop(c2);
    }
}
