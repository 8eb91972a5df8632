//! The Marathon test server (`l4lb-fake-marathon`) against the documented
//! API, checked with plain HTTP from inside the sandbox netns. No BPF.
use std::{
    io,
    time::{Duration, Instant},
};

use l4lb_tests::{
    Sandbox,
    marathon::{
        FakeMarathon, Fault, StreamEnd, TaskSpec, http_get, model, redis_app, redis_app_opts,
    },
    require_root,
};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(5);

fn redis3() -> Value {
    json!({"apps": [redis_app(
        "/redis",
        "/redis:6379",
        &[
            TaskSpec::new("127.0.0.2", 7000).alive(Some(true)),
            TaskSpec::new("127.0.0.3", 7000).alive(Some(false)),
            TaskSpec::new("127.0.0.4", 7000),
        ],
    )]})
}

/// `<prefix>.instance-<uuid v1>._app.<n>`
fn assert_task_id(id: &str, prefix: &str) {
    let rest = id
        .strip_prefix(&format!("{prefix}.instance-"))
        .unwrap_or_else(|| panic!("task id {id:?} lacks {prefix}.instance-"));
    let (uuid, n) = rest.split_once("._app.").expect("._app.");
    assert_eq!(uuid.len(), 36, "{id}");
    assert_eq!(uuid.matches('-').count(), 4, "{id}");
    assert!(n.parse::<u32>().is_ok(), "{id}");
}

fn assert_documented_task(t: &Value, app_id: &str) {
    for k in [
        "id",
        "appId",
        "host",
        "ipAddresses",
        "ports",
        "servicePorts",
        "slaveId",
        "state",
        "stagedAt",
        "startedAt",
        "version",
        "healthCheckResults",
    ] {
        assert!(t.get(k).is_some(), "task lacks {k}: {t}");
    }
    assert!(
        t.get("taskState").is_none(),
        "the field is state, not taskState"
    );
    assert_eq!(t["appId"], app_id);
    assert_task_id(t["id"].as_str().unwrap(), &model::app_id_prefix(app_id));
    let slave = t["slaveId"].as_str().unwrap();
    assert!(model::agent_index(slave).is_some(), "slaveId {slave}");
    let ip = &t["ipAddresses"][0];
    assert!(
        ip["ipAddress"].is_string() && ip["protocol"] == "IPv4",
        "{t}"
    );
}

#[test]
fn apps_with_embedded_tasks_in_the_documented_shape() {
    require_root();
    let mut sb = Sandbox::new("fm-apps").unwrap();
    let m = FakeMarathon::start(&mut sb, 1, redis3()).unwrap();

    let r = m.get(0, "/v2/apps?embed=apps.tasks", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v = r.json().unwrap();
    let app = &v["apps"][0];
    assert_eq!(app["id"], "/redis");
    assert_eq!(app["portDefinitions"][0]["labels"]["VIP_0"], "/redis:6379");
    assert_eq!(app["networks"][0]["mode"], "host");
    assert_eq!(app["healthChecks"][0]["protocol"], "MESOS_TCP");
    assert_eq!(
        (app["tasksRunning"].clone(), app["tasksHealthy"].clone()),
        (json!(3), json!(1))
    );
    let tasks = app["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    for t in tasks {
        assert_documented_task(t, "/redis");
        assert_eq!(t["state"], "TASK_RUNNING");
        assert_eq!(t["ports"], json!([7000]));
    }
    let alive: Vec<Value> = tasks
        .iter()
        .map(|t| t["healthCheckResults"][0]["alive"].clone())
        .collect();
    assert_eq!(alive, [json!(true), json!(false), Value::Null]);
    let hr = &tasks[0]["healthCheckResults"][0];
    for k in [
        "consecutiveFailures",
        "firstSuccess",
        "lastFailure",
        "lastSuccess",
        "taskId",
        "instanceId",
    ] {
        assert!(hr.get(k).is_some(), "health result lacks {k}: {hr}");
    }
    assert_eq!(hr["taskId"], tasks[0]["id"]);

    // Without the embed: no tasks, counts still there.
    let plain = m.get(0, "/v2/apps", &[]).unwrap().json().unwrap();
    assert!(plain["apps"][0].get("tasks").is_none(), "{plain}");
    assert_eq!(plain["apps"][0]["tasksRunning"], 3);

    // Single app, its tasks, all tasks; unknown app 404.
    let one = m.get(0, "/v2/apps/redis", &[]).unwrap().json().unwrap();
    assert_eq!(one["app"]["tasks"].as_array().unwrap().len(), 3);
    let t = m
        .get(0, "/v2/apps/redis/tasks", &[])
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(t["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(
        m.get(0, "/v2/tasks", &[]).unwrap().json().unwrap()["tasks"],
        t["tasks"]
    );
    let missing = m.get(0, "/v2/apps/nope", &[]).unwrap();
    assert_eq!(missing.status, 404);
    assert!(
        missing.json().unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("/nope")
    );

    // The control view is the same state.
    assert_eq!(m.apps().unwrap()["apps"][0]["tasks"], app["tasks"]);

    // A container/bridge app: scaled tasks get one host port per mapping
    // and the mappings' service ports.
    m.add_app(json!({
        "id": "/shop/web", "instances": 0,
        "container": {"type": "DOCKER", "docker": {"image": "nginx"}, "portMappings": [
            {"containerPort": 80, "hostPort": 0, "servicePort": 10102, "protocol": "tcp",
             "labels": {"VIP_0": "/shop/web:80"}},
            {"containerPort": 9090, "hostPort": 0, "servicePort": 10103, "protocol": "udp,tcp"}]},
        "networks": [{"mode": "container/bridge"}],
    }))
    .unwrap();
    let t = m
        .scale(
            "/shop/web",
            &TaskSpec {
                host: "127.0.0.5".into(),
                ..Default::default()
            }
            .ips(&["172.17.0.3"]),
        )
        .unwrap();
    assert_documented_task(&t, "/shop/web");
    assert_eq!(t["ports"].as_array().unwrap().len(), 2, "{t}");
    assert_eq!(t["servicePorts"], json!([10102, 10103]));
    assert_eq!(
        t["ipAddresses"],
        json!([{"ipAddress": "172.17.0.3", "protocol": "IPv4"}])
    );
    assert_eq!(
        t["healthCheckResults"],
        json!([]),
        "no health checks, no results"
    );
    let web = m.get(0, "/v2/apps/shop/web", &[]).unwrap().json().unwrap();
    assert_eq!(web["app"]["instances"], 1);
    assert_eq!(web["app"]["tasks"][0]["id"], t["id"]);
    // Same host → same agent; a known host keeps its slaveId.
    let again = m
        .scale("/shop/web", &TaskSpec::new("127.0.0.5", 31999))
        .unwrap();
    assert_eq!(again["slaveId"], t["slaveId"]);

    // Control errors are errors.
    assert!(m.kill("no-such-task").is_err());
    assert!(m.scale("/nope", &TaskSpec::new("127.0.0.1", 1)).is_err());
    assert!(
        m.set_health(t["id"].as_str().unwrap(), Some(true)).is_err(),
        "app has no health checks"
    );
}

#[test]
fn leader_endpoint_redirects_and_no_leader() {
    require_root();
    let mut sb = Sandbox::new("fm-leader").unwrap();
    let m = FakeMarathon::start(&mut sb, 3, redis3()).unwrap();
    let urls = m.urls();
    assert_eq!(urls.len(), 3);
    assert!(
        urls.iter().all(|u| u.starts_with("http://127.0.0.1:")),
        "{urls:?}"
    );

    for i in 0..3 {
        let r = m.get(i, "/v2/leader", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json().unwrap(),
            json!({"leader": m.addrs()[0].to_string()})
        );
    }
    // A standby redirects the event stream to the leader, query kept.
    let mut s = m.events(1, "?event_type=status_update_event", &[]).unwrap();
    assert_eq!(s.status(), 307);
    assert_eq!(
        s.head().header("location").unwrap(),
        format!("{}/v2/events?event_type=status_update_event", urls[0])
    );
    assert!(
        matches!(s.next_event(T), Ok(None)),
        "a redirect has no events"
    );
    // …and serves the rest (as the leader's proxy would).
    let r = m.get(2, "/v2/apps?embed=apps.tasks", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json().unwrap()["apps"][0]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(r.header("x-marathon-leader"), Some(urls[0].as_str()));
    assert!(r.header("x-marathon-via").is_some());
    // Following the redirect by hand gets the stream.
    let loc = s.head().header("location").unwrap().to_string();
    let mut s = l4lb_tests::marathon::SseClient::open(&sb.netns_path(), &loc, &[]).unwrap();
    assert_eq!(s.status(), 200);

    // New leader: /v2/leader everywhere, redirects to it; the old leader's
    // streams close (Marathon's standby closes every handle).
    m.set_leader(Some(2)).unwrap();
    let (end, _) = s.wait_end(T).unwrap();
    assert_eq!(end, StreamEnd::Clean);
    assert_eq!(
        m.get(0, "/v2/leader", &[]).unwrap().json().unwrap()["leader"],
        m.addrs()[2].to_string()
    );
    let s = m.events(0, "", &[]).unwrap();
    assert_eq!(s.status(), 307);
    assert_eq!(
        s.head().header("location").unwrap(),
        format!("{}/v2/events", urls[2])
    );
    assert_eq!(m.events(2, "", &[]).unwrap().status(), 200);

    // No leader: 404 on /v2/leader, 503 on the rest.
    m.set_leader(None).unwrap();
    assert_eq!(m.get(1, "/v2/leader", &[]).unwrap().status, 404);
    assert_eq!(m.get(1, "/v2/apps", &[]).unwrap().status, 503);
    assert_eq!(m.events(2, "", &[]).unwrap().status(), 503);
    assert_eq!(m.state().unwrap()["leader"], Value::Null);
    assert!(m.set_leader(Some(3)).is_err(), "only 3 instances");
    m.set_leader(Some(1)).unwrap();
    assert_eq!(m.get(0, "/v2/apps", &[]).unwrap().status, 200);
}

#[test]
fn event_stream_attached_then_changes_in_documented_shapes() {
    require_root();
    let mut sb = Sandbox::new("fm-sse").unwrap();
    let m = FakeMarathon::start_with_args(&mut sb, 2, redis3(), &["--sse-keepalive-ms", "200"])
        .unwrap();

    // No Accept: text/event-stream → 405, as Jetty's EventSourceServlet.
    let r = m.get(0, "/v2/events", &[]).unwrap();
    assert_eq!(r.status, 405);

    let mut all = m.events(0, "", &[]).unwrap();
    assert_eq!(all.status(), 200);
    assert!(
        all.head()
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let first = all.next_event(T).unwrap().expect("an event");
    assert_eq!(first.event_type, "event_stream_attached");
    let a = first.json().unwrap();
    assert_eq!(a["eventType"], "event_stream_attached");
    assert_eq!(a["remoteAddress"], "127.0.0.1");
    assert!(a["timestamp"].as_str().unwrap().ends_with('Z'));

    let mut filtered = m
        .events(
            0,
            "?event_type=status_update_event&event_type=health_status_changed_event",
            &[],
        )
        .unwrap();
    assert_eq!(filtered.status(), 200);

    // Scale: status_update_event with the documented fields.
    let task = m
        .scale(
            "/redis",
            &TaskSpec::new("127.0.0.9", 7001).alive(Some(true)),
        )
        .unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    assert_documented_task(&task, "/redis");
    let ev = filtered.next_event(T).unwrap().expect("an event");
    assert_eq!(
        ev.event_type, "status_update_event",
        "the filter drops everything else"
    );
    let su = ev.json().unwrap();
    assert_eq!(su["eventType"], "status_update_event");
    assert_eq!(su["taskStatus"], "TASK_RUNNING");
    assert_eq!(su["taskId"], id.as_str());
    assert_eq!(su["appId"], "/redis");
    assert_eq!(su["host"], "127.0.0.9");
    assert_eq!(su["ports"], json!([7001]));
    assert_eq!(
        su["ipAddresses"],
        json!([{"ipAddress": "127.0.0.9", "protocol": "IPv4"}])
    );
    assert_eq!(su["slaveId"], task["slaveId"]);
    let hc = filtered.next_event(T).unwrap().expect("an event");
    assert_eq!(hc.event_type, "health_status_changed_event");
    assert_eq!(hc.json().unwrap()["alive"], true);

    // The unfiltered stream: Marathon's order for a scale.
    let mut types = vec![];
    while types.last().map(String::as_str) != Some("deployment_success") {
        types.push(all.next_event(T).unwrap().expect("an event").event_type);
    }
    assert_eq!(
        types,
        [
            "event_stream_attached", // the filtered stream's, on the shared bus
            "api_post_event",
            "status_update_event",
            "instance_changed_event",
            "health_status_changed_event",
            "instance_health_changed_event",
            "deployment_success"
        ]
    );

    // Health goes bad.
    m.set_health(&id, Some(false)).unwrap();
    let h = all
        .wait_for("health_status_changed_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (h["alive"].clone(), h["taskId"].clone()),
        (json!(false), json!(id))
    );
    assert_eq!(h["instanceId"], model::instance_id_of(&id));
    assert_eq!(h["appId"], "/redis");
    let t = &m.get(0, "/v2/apps/redis", &[]).unwrap().json().unwrap()["app"]["tasks"][3];
    assert_eq!(t["healthCheckResults"][0]["alive"], false);

    // Kill: TASK_KILLING (still listed), then TASK_KILLED (gone).
    assert_eq!(m.kill(&id).unwrap(), "TASK_KILLING");
    let k = all
        .wait_for("status_update_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(k["taskStatus"], "TASK_KILLING");
    let listed = |m: &FakeMarathon| -> Vec<Value> {
        m.apps().unwrap()["apps"][0]["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["id"] == id.as_str())
            .cloned()
            .collect()
    };
    assert_eq!(listed(&m)[0]["state"], "TASK_KILLING");
    assert_eq!(m.kill(&id).unwrap(), "TASK_KILLED");
    let k = all
        .wait_for("status_update_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(k["taskStatus"], "TASK_KILLED");
    assert!(listed(&m).is_empty());

    // Unreachable keeps the task; a terminal state expunges it.
    let victim = m.apps().unwrap()["apps"][0]["tasks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    m.set_task_state(&victim, "TASK_UNREACHABLE").unwrap();
    let u = all
        .wait_for("status_update_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        (u["taskStatus"].clone(), u["ipAddresses"].clone()),
        (json!("TASK_UNREACHABLE"), json!([]))
    );
    m.set_task_state(&victim, "TASK_FAILED").unwrap();
    assert_eq!(
        all.wait_for("status_update_event", T)
            .unwrap()
            .json()
            .unwrap()["taskStatus"],
        "TASK_FAILED"
    );
    assert_eq!(
        m.apps().unwrap()["apps"][0]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Removing the app: its tasks killed, app_terminated_event.
    m.remove_app("/redis").unwrap();
    let t = all
        .wait_for("app_terminated_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(t["appId"], "/redis");
    let d = all
        .wait_for("deployment_success", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        d["plan"]["steps"][0]["actions"][0]["action"],
        "StopApplication"
    );
    assert_eq!(
        m.get(0, "/v2/apps", &[]).unwrap().json().unwrap(),
        json!({"apps": []})
    );

    // put_apps: api_post_event per new app; raw events pass through.
    m.put_apps(redis3()).unwrap();
    let p = all.wait_for("api_post_event", T).unwrap().json().unwrap();
    assert_eq!(p["appDefinition"]["id"], "/redis");
    assert!(p["appDefinition"].get("tasks").is_none());
    m.emit(json!({"eventType": "unknown_instance_terminated_event", "instanceId": "x"}))
        .unwrap();
    all.wait_for("unknown_instance_terminated_event", T)
        .unwrap();

    // Keepalive comment lines.
    std::thread::sleep(Duration::from_millis(500));
    let _ = all.next_event(Duration::from_millis(50));
    assert!(
        all.keepalives >= 1,
        "no keepalive in 500 ms at 200 ms period"
    );
    assert_eq!(m.state().unwrap()["instances"][0]["sseStreams"], 2);
}

#[test]
fn kill_grace_and_crlf_framing() {
    require_root();
    let mut sb = Sandbox::new("fm-grace").unwrap();
    let m = FakeMarathon::start_with_args(
        &mut sb,
        1,
        redis3(),
        &["--kill-grace-ms", "300", "--sse-crlf"],
    )
    .unwrap();
    let mut s = m.events(0, "?event_type=status_update_event", &[]).unwrap();
    let id = m.apps().unwrap()["apps"][0]["tasks"][2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m.kill(&id).unwrap(), "TASK_KILLING");
    let a = s
        .wait_for("status_update_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(a["taskStatus"], "TASK_KILLING");
    let b = s
        .wait_for("status_update_event", T)
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(b["taskStatus"], "TASK_KILLED");
    assert_eq!(
        m.apps().unwrap()["apps"][0]["tasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let raw = String::from_utf8_lossy(&s.raw).into_owned();
    assert!(
        raw.starts_with("event: status_update_event\r\ndata: {"),
        "{raw:?}"
    );
    assert!(raw.contains("}\r\n\r\nevent: "), "{raw:?}");
}

fn refused(r: anyhow::Result<l4lb_tests::marathon::HttpReply>) -> bool {
    match r {
        Ok(_) => false,
        Err(e) => e
            .chain()
            .filter_map(|c| c.downcast_ref::<io::Error>())
            .any(|e| e.kind() == io::ErrorKind::ConnectionRefused),
    }
}

/// Polls until `f` holds (faults apply asynchronously to listeners).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {T:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn faults_behave_as_documented() {
    require_root();
    let mut sb = Sandbox::new("fm-faults").unwrap();
    let m = FakeMarathon::start(&mut sb, 2, redis3()).unwrap();

    // status: that status and a JSON message, also through a standby's proxy.
    m.fault(0, Fault::Status { code: 503 }).unwrap();
    let r = m.get(0, "/v2/apps", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert!(r.json().unwrap()["message"].is_string());
    assert_eq!(
        m.get(1, "/v2/apps", &[]).unwrap().status,
        503,
        "proxied to the failing leader"
    );
    m.clear_faults().unwrap();
    assert_eq!(m.get(0, "/v2/apps", &[]).unwrap().status, 200);

    // garbage: 200 application/json that is not JSON.
    m.fault(0, Fault::Garbage).unwrap();
    let r = m.get(0, "/v2/apps?embed=apps.tasks", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(r.json().is_err(), "{}", r.text());
    m.clear_faults().unwrap();

    // truncate: Content-Length promises more than arrives, then close.
    m.fault(1, Fault::Truncate).unwrap();
    let r = m.get(1, "/v2/apps?embed=apps.tasks", &[]).unwrap();
    assert_eq!(r.status, 200);
    let cl: usize = r.header("content-length").unwrap().parse().unwrap();
    assert!(
        !r.complete && r.body.len() < cl && !r.body.is_empty(),
        "{} of {cl}",
        r.body.len()
    );
    assert!(r.json().is_err());
    assert_eq!(
        m.get(0, "/v2/apps", &[]).unwrap().status,
        200,
        "only instance 1"
    );
    m.clear_faults().unwrap();
    assert!(m.get(1, "/v2/apps", &[]).unwrap().complete);

    // slow_ms: every response that late.
    m.fault(1, Fault::SlowMs { ms: 600 }).unwrap();
    let t0 = Instant::now();
    assert_eq!(m.get(1, "/v2/leader", &[]).unwrap().status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    m.clear_faults().unwrap();

    // down: connections refused, open streams dropped; clear → back.
    let mut s = m.events(0, "", &[]).unwrap();
    s.wait_for("event_stream_attached", T).unwrap();
    m.fault(0, Fault::Down).unwrap();
    let (end, _) = s.wait_end(T).unwrap();
    assert!(matches!(end, StreamEnd::Aborted(_)), "{end:?}");
    eventually("instance 0 refuses", || refused(m.get(0, "/v2/apps", &[])));
    // The standby cannot reach the down leader: 502; /v2/leader is local.
    let r = m.get(1, "/v2/apps", &[]).unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(m.get(1, "/v2/leader", &[]).unwrap().status, 200);
    assert_eq!(m.state().unwrap()["instances"][0]["faults"]["down"], true);
    m.clear_faults().unwrap();
    eventually("instance 0 back", || {
        m.get(0, "/v2/apps", &[]).is_ok_and(|r| r.status == 200)
    });
    assert_eq!(
        m.addrs()[0],
        m.state().unwrap()["instances"][0]["addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    );

    // reset: accepted then RST, no response.
    m.fault(1, Fault::Reset).unwrap();
    let e = m
        .get(1, "/v2/leader", &[])
        .expect_err("a reset connection has no reply");
    assert!(!refused(Err(e)), "reset is not refused");
    m.clear_faults().unwrap();
    assert_eq!(m.get(1, "/v2/leader", &[]).unwrap().status, 200);

    // disconnect_events: open streams aborted now, new ones work.
    let mut s = m.events(0, "", &[]).unwrap();
    s.wait_for("event_stream_attached", T).unwrap();
    m.fault(0, Fault::DisconnectEvents).unwrap();
    let (end, _) = s.wait_end(T).unwrap();
    assert!(matches!(end, StreamEnd::Aborted(_)), "{end:?}");
    let mut s = m.events(0, "", &[]).unwrap();
    assert_eq!(
        s.wait_for("event_stream_attached", T).unwrap().event_type,
        "event_stream_attached"
    );

    // truncate on the stream: half a frame, then the connection closes.
    m.fault(0, Fault::Truncate).unwrap();
    let mut s = m.events(0, "", &[]).unwrap();
    assert_eq!(s.status(), 200);
    let (end, seen) = s.wait_end(T).unwrap();
    assert!(
        matches!(end, StreamEnd::Aborted(_)) && seen.is_empty(),
        "{end:?} {seen:?}"
    );
    assert!(
        !s.raw.is_empty() && !s.raw.ends_with(b"\n\n"),
        "{:?}",
        String::from_utf8_lossy(&s.raw)
    );
    m.clear_faults().unwrap();

    assert!(m.fault(7, Fault::Down).is_err(), "no instance 7");
}

#[test]
fn auth_token_and_basic() {
    require_root();
    let mut sb = Sandbox::new("fm-auth").unwrap();
    let m = FakeMarathon::start_with_args(
        &mut sb,
        2,
        redis3(),
        &["--require-token", "s3cret", "--require-basic", "ops:pw"],
    )
    .unwrap();
    let basic = format!("Basic {}", model::base64(b"ops:pw"));
    let wrong = format!("Basic {}", model::base64(b"ops:nope"));

    for (path, inst) in [("/v2/apps", 0), ("/v2/leader", 1), ("/v2/apps", 1)] {
        let r = m.get(inst, path, &[]).unwrap();
        assert_eq!(r.status, 401, "{path} on {inst}");
        assert!(r.header("www-authenticate").is_some());
        for bad in ["token=nope", "s3cret", wrong.as_str()] {
            assert_eq!(
                m.get(inst, path, &[("Authorization", bad)]).unwrap().status,
                401,
                "{bad}"
            );
        }
        for good in ["token=s3cret", basic.as_str()] {
            assert_eq!(
                m.get(inst, path, &[("Authorization", good)])
                    .unwrap()
                    .status,
                200,
                "{good}"
            );
        }
    }
    assert_eq!(m.events(0, "", &[]).unwrap().status(), 401);
    let mut s = m
        .events(0, "", &[("Authorization", "token=s3cret")])
        .unwrap();
    assert_eq!(s.status(), 200);
    s.wait_for("event_stream_attached", T).unwrap();
    // /ping is open, as in Marathon.
    let r = http_get(&sb, &format!("{}/ping", m.url(0)), &[]).unwrap();
    assert_eq!((r.status, r.text()), (200, "pong".to_string()));
}

#[test]
fn health_checked_app_without_results() {
    require_root();
    let mut sb = Sandbox::new("fm-nohc").unwrap();
    let app = redis_app_opts(
        "/cache",
        "cache:11211",
        &[TaskSpec::new("127.0.0.2", 11211)],
        true,
    );
    let m = FakeMarathon::start(&mut sb, 1, json!([app])).unwrap();
    let v = m
        .get(0, "/v2/apps?embed=apps.tasks", &[])
        .unwrap()
        .json()
        .unwrap();
    let t = &v["apps"][0]["tasks"][0];
    assert_eq!(t["healthCheckResults"], json!([]));
    assert_eq!(v["apps"][0]["healthChecks"][0]["protocol"], "MESOS_TCP");
    let id = t["id"].as_str().unwrap();
    m.set_health(id, Some(true)).unwrap();
    m.set_health(id, Some(false)).unwrap();
    let v = m.get(0, "/v2/apps/cache", &[]).unwrap().json().unwrap();
    let r = &v["app"]["tasks"][0]["healthCheckResults"][0];
    assert_eq!(
        (r["alive"].clone(), r["consecutiveFailures"].clone()),
        (json!(false), json!(1))
    );
    assert!(
        r["firstSuccess"].is_string() && r["lastFailure"].is_string(),
        "{r}"
    );
    m.set_health(id, None).unwrap();
    let v = m.get(0, "/v2/apps/cache", &[]).unwrap().json().unwrap();
    assert_eq!(v["app"]["tasks"][0]["healthCheckResults"], json!([]));
}
