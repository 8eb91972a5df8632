//! The fake master's own rules: events change what a new subscriber and
//! `/master/state` see; a non-leader redirects every Mesos request.
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::fake_mesos::model::{
    TaskSpec, agent, agent_added, agent_removed, framework, framework_added, framework_removed,
    framework_updated, get_state, master_state, recovering, task_added,
};

fn names(state: &Value, list_at: &str, field: &str) -> Vec<String> {
    let mut v: Vec<String> = master_state(state)[list_at]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn task_ids(state: &Value) -> Vec<String> {
    let mut v: Vec<String> = list(state, &TASKS)
        .iter()
        .map(|t| t["task_id"]["value"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn agent_and_framework_events_change_the_state_new_subscribers_get() {
    let t1 = TaskSpec::new("web.1", "fw-m", "S1", "127.0.0.2").json();
    let mut st = get_state(
        vec![agent("S1", "127.0.0.1")],
        vec![framework("fw-m", "marathon")],
        vec![t1],
    );
    apply_event(&mut st, &agent_added(&agent("S2", "127.0.0.3")));
    apply_event(&mut st, &framework_added(&framework("fw-k", "kafka")));
    apply_event(
        &mut st,
        &task_added(&TaskSpec::new("b.1", "fw-k", "S2", "127.0.0.4").json()),
    );
    apply_event(&mut st, &framework_updated(&framework("fw-k", "kafka-2")));
    assert_eq!(names(&st, "slaves", "id"), ["S1", "S2"]);
    assert_eq!(names(&st, "frameworks", "name"), ["kafka-2", "marathon"]);
    assert_eq!(task_ids(&st), ["b.1", "web.1"]);

    apply_event(&mut st, &framework_removed(&framework("fw-k", "kafka-2")));
    assert_eq!(names(&st, "frameworks", "name"), ["marathon"]);
    assert_eq!(task_ids(&st), ["web.1"]);
    apply_event(&mut st, &agent_removed("S1"));
    assert_eq!(names(&st, "slaves", "id"), ["S2"]);
    assert!(task_ids(&st).is_empty());
}

#[test]
fn a_new_leaders_recovered_agent_becomes_an_agent_when_it_re_registers() {
    let cluster = get_state(vec![agent("S1", "127.0.0.1")], vec![], vec![]);
    let mut st = recovering(&cluster);
    assert_eq!(list(&st, &RECOVERED).len(), 1);
    assert!(names(&st, "slaves", "id").is_empty());
    apply_event(&mut st, &agent_added(&agent("S1", "127.0.0.1")));
    assert!(list(&st, &RECOVERED).is_empty());
    assert_eq!(names(&st, "slaves", "id"), ["S1"]);
}

#[test]
fn a_non_leader_answers_307_to_the_leader_and_ends_its_streams() {
    let sh = Shared::new(get_state(vec![], vec![], vec![]), Duration::from_secs(1));
    let mut frames = sh.frames.subscribe();
    assert!(lead(&sh, &json!({"leader": 5})).is_err());
    lead(&sh, &json!({"leader": "http://127.0.0.1:5050/"})).unwrap();
    assert!(matches!(frames.try_recv(), Ok(Frame::Close)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let answer = rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(4096);
        let serving = tokio::spawn(serve_mesos(sh.clone(), server));
        let body = r#"{"type":"SUBSCRIBE"}"#;
        let req = format!(
            "POST /api/v1 HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        serving.await.unwrap();
        out
    });
    assert!(answer.starts_with("HTTP/1.1 307"), "{answer}");
    assert!(
        answer.contains("\r\nLocation: //127.0.0.1:5050/api/v1\r\n"),
        "{answer}"
    );
    assert_eq!(sh.subscriptions.load(SeqCst), 0);
    lead(&sh, &json!({"leader": null})).unwrap();
    assert!(sh.leader().is_none());
}
