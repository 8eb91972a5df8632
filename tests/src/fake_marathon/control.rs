//! The scripting API (JSON over HTTP on `--control-socket` / `--control`).
//! Every call answers 200 with a JSON body once the change is applied (and
//! its events published), or 4xx with `{"message": …}`.
//!
//! | call | body | effect |
//! |---|---|---|
//! | `GET /apps` | | `{"apps":[…]}` with tasks |
//! | `PUT /apps` | `{"apps":[…]}` | replace all apps (events for the diff) |
//! | `POST /apps` | app | add or replace one app |
//! | `DELETE /apps/<id>` | | remove an app (`app_terminated_event`) |
//! | `GET /pods` | | every pod status (`/v2/pods/::status`) |
//! | `POST /pods` | pod status (`model::pod_status`) | add (`pod_created_event`) or replace (`pod_updated_event`) one pod, with its tasks' events |
//! | `DELETE /pods/<id>` | | remove a pod (`pod_deleted_event`, its tasks TASK_KILLED) |
//! | `POST /scale` | `{"app", "host", "ports"\|"port", "ipAddresses", "state", "alive"}` | start a task → `{"task":…}` |
//! | `POST /kill` | `{"taskId", "force"?}` | TASK_KILLING, then (2nd call, force, or `--kill-grace-ms`) TASK_KILLED and gone → `{"taskId","state"}` |
//! | `POST /health` | `{"taskId", "alive": true\|false\|null}` | health-check result |
//! | `POST /task_state` | `{"taskId", "state", "message"?}` | any Mesos state; terminal ones expunge the task |
//! | `POST /leader` | `{"leader": N\|null}` | leader instance (null: none) |
//! | `POST /fault` | `{"instance": N, "fault": KIND, …}` | see `model::Fault` |
//! | `POST /clear_faults` | `{"instance"?: N}` | clear one instance's faults, or all |
//! | `POST /event` | `{"eventType", …}` | publish a raw event |
//! | `GET /state` | | leader, instances (addr, faults, open SSE streams, requests, requests with an Authorization header), apps |
use std::{convert::Infallible, sync::Arc};

use super::model::{Fault, Faults, TaskSpec};
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, body::Incoming};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    api::{Body, json_reply},
    state::{CtlResult, Shared, parse_apps},
};

#[derive(Deserialize)]
struct FaultReq {
    instance: usize,
    #[serde(flatten)]
    fault: Fault,
}

pub async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(json_reply(400, &json!({"message": e.to_string()}), false)),
    };
    let result = match serde_json::from_slice::<Value>(&body) {
        _ if body.is_empty() => control(&sh, &method, &path, Value::Null),
        Ok(v) => control(&sh, &method, &path, v),
        Err(e) => Err((400, format!("body is not JSON: {e}"))),
    };
    let resp = match result {
        Ok(v) => json_reply(200, &v, false),
        Err((code, msg)) => json_reply(code, &json!({ "message": msg }), false),
    };
    eprintln!(
        "fake-marathon[control] {method} {path} -> {}",
        resp.status().as_u16()
    );
    Ok(resp)
}

fn field<'a>(v: &'a Value, k: &str) -> CtlResult<&'a Value> {
    v.get(k)
        .ok_or_else(|| (400, format!("missing field {k:?}")))
}

fn str_field<'a>(v: &'a Value, k: &str) -> CtlResult<&'a str> {
    field(v, k)?
        .as_str()
        .ok_or_else(|| (400, format!("field {k:?} must be a string")))
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> CtlResult<T> {
    serde_json::from_value(v).map_err(|e| (400, e.to_string()))
}

fn ok() -> CtlResult<Value> {
    Ok(json!({"ok": true}))
}

fn control(sh: &Arc<Shared>, method: &Method, path: &str, body: Value) -> CtlResult<Value> {
    match (method.as_str(), path) {
        ("GET", "/apps") => Ok(sh.apps_json(true)),
        ("PUT", "/apps") => {
            sh.put_apps(parse_apps(body)?);
            ok()
        }
        ("POST", "/apps") => {
            sh.add_app(body)?;
            ok()
        }
        ("DELETE", p) if p.starts_with("/apps/") => {
            sh.remove_app(&p["/apps".len()..])?;
            ok()
        }
        ("GET", "/pods") => Ok(sh.pods_status()),
        ("POST", "/pods") => {
            sh.put_pod(body)?;
            ok()
        }
        ("DELETE", p) if p.starts_with("/pods/") => {
            sh.remove_pod(&p["/pods".len()..])?;
            ok()
        }
        ("POST", "/scale") => scale(sh, body),
        ("POST", "/kill") => kill(sh, &body),
        ("POST", "/health") => health(sh, &body),
        ("POST", "/task_state") => {
            let id = str_field(&body, "taskId")?;
            let state = str_field(&body, "state")?;
            let msg = body["message"].as_str().unwrap_or_default();
            sh.set_task_state(id, state, msg)?;
            ok()
        }
        ("POST", "/leader") => leader(sh, &body),
        ("POST", "/fault") => fault(sh, from(body)?),
        ("POST", "/clear_faults") => clear_faults(sh, &body),
        ("POST", "/event") => event(sh, body),
        ("GET", "/served") => Ok(sh.served.to_json()),
        ("GET", "/state") => Ok(state(sh)),
        _ => Err((404, format!("no control call {method} {path}"))),
    }
}

/// A new task of an app (`port` shorthand for a one-port task).
fn scale(sh: &Arc<Shared>, body: Value) -> CtlResult<Value> {
    let app = str_field(&body, "app")?.to_string();
    let app = if app.starts_with('/') {
        app
    } else {
        format!("/{app}")
    };
    let port = body.get("port").and_then(Value::as_u64);
    let mut spec: TaskSpec = from(body)?;
    if spec.ports.is_empty()
        && let Some(p) = port
    {
        spec.ports = vec![u16::try_from(p).map_err(|_| (400, "port > 65535".to_string()))?];
    }
    Ok(json!({ "task": sh.scale(&app, spec)? }))
}

/// Kills a task; one left TASK_KILLING expires after the kill grace.
fn kill(sh: &Arc<Shared>, body: &Value) -> CtlResult<Value> {
    let id = str_field(body, "taskId")?.to_string();
    let force = body["force"].as_bool().unwrap_or(false);
    let state = sh.kill(&id, force)?;
    if state == "TASK_KILLING"
        && let Some(grace) = sh.opts.kill_grace
    {
        let (sh, id) = (sh.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            sh.expire_killing(&id);
        });
    }
    Ok(json!({"taskId": id, "state": state}))
}

fn health(sh: &Arc<Shared>, body: &Value) -> CtlResult<Value> {
    let id = str_field(body, "taskId")?;
    let alive = match field(body, "alive")? {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        _ => return Err((400, "\"alive\" must be true, false or null".into())),
    };
    sh.set_health(id, alive)?;
    ok()
}

fn leader(sh: &Arc<Shared>, body: &Value) -> CtlResult<Value> {
    let leader = match field(body, "leader")? {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .ok_or((400, "\"leader\" must be an index or null".to_string()))?
                as usize,
        ),
    };
    sh.set_leader(leader)?;
    ok()
}

fn fault(sh: &Arc<Shared>, req: FaultReq) -> CtlResult<Value> {
    let inst = sh.instance(req.instance)?;
    match req.fault {
        Fault::DisconnectEvents => {
            inst.sse_kill.send_modify(|n| *n += 1);
        }
        f => {
            inst.faults.send_modify(|x| x.apply(&f));
            if matches!(f, Fault::Down | Fault::Reset) {
                inst.conn_kill.send_modify(|n| *n += 1);
            }
        }
    }
    ok()
}

/// Clears one instance's faults (`instance`), or every instance's.
fn clear_faults(sh: &Arc<Shared>, body: &Value) -> CtlResult<Value> {
    match body.get("instance").and_then(Value::as_u64) {
        Some(i) => {
            sh.instance(i as usize)?
                .faults
                .send_replace(Faults::default());
        }
        None => {
            for inst in &sh.instances {
                inst.faults.send_replace(Faults::default());
            }
        }
    }
    ok()
}

/// Publishes an event; `"repeat": N` publishes it N times (bursts), at most 100k.
fn event(sh: &Arc<Shared>, body: Value) -> CtlResult<Value> {
    str_field(&body, "eventType")?;
    let repeat = body
        .get("repeat")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 100_000);
    let mut event = body;
    if let Some(o) = event.as_object_mut() {
        o.remove("repeat");
    }
    for _ in 0..repeat {
        sh.publish(event.clone());
    }
    ok()
}

fn state(sh: &Shared) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let instances: Vec<Value> = sh
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            json!({
                "index": i,
                "addr": inst.addr.to_string(),
                "url": format!("http://{}", inst.addr),
                "faults": *inst.faults.borrow(),
                "sseStreams": sh.sse_streams(i),
                "requests": inst.requests.load(Relaxed),
                "withAuth": inst.with_auth.load(Relaxed),
            })
        })
        .collect();
    json!({
        "leader": *sh.leader.borrow(),
        "instances": instances,
        "served": sh.served.to_json(),
        "apps": sh.apps_json(true)["apps"],
    })
}
