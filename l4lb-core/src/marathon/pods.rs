//! Wire types of Marathon's pod status (`GET /v2/pods/::status`, a list, and
//! `GET /v2/pods/{id}::status`, one): each `PodStatus` carries the pod's
//! `spec` (networks, containers and their `endpoints`, where VIP labels sit)
//! and its `instances` (agent, network addresses, and per container the Mesos
//! task state, the endpoints' allocated host ports and health).
//!
//! Like the app types, they take what the datapath and DNS need and ignore
//! every other field; everything but `id` is optional and `null` reads as
//! absent, so one bad pod is skipped with a warning naming the field (see
//! [`pod_from_value`]), never the whole list.
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, de};
use serde_json::Value;

use super::apps::{kind, locate, nullable, task_labels};

/// One entry of `/v2/pods/::status` (Marathon's `PodStatus`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Absolute path, `/shop/web`; the spec's id is the same.
    pub id: String,
    #[serde(default)]
    pub spec: Option<PodSpec>,
    #[serde(default, deserialize_with = "nullable")]
    pub instances: Vec<PodInstance>,
}

/// `spec`: the pod definition (Marathon's `Pod`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub id: Option<String>,
    /// Empty: host networking (Marathon's default for pods).
    #[serde(default, deserialize_with = "nullable")]
    pub networks: Vec<PodNetwork>,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<PodContainer>,
}

/// `spec.networks[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct PodNetwork {
    /// `host`, `container` (the default when absent) or `container/bridge`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `spec.containers[]`: one Mesos task per instance, named after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodContainer {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints: Vec<PodEndpoint>,
    /// Only its presence matters: it makes a health result mandatory.
    #[serde(default, deserialize_with = "present")]
    pub health_check: bool,
}

/// `spec.containers[].endpoints[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodEndpoint {
    #[serde(default)]
    pub name: String,
    /// Where the container listens (container networking).
    #[serde(default)]
    pub container_port: Option<i64>,
    /// Present (0 = Marathon picks one) when the endpoint is mapped on the
    /// agent; the port it got is the instance's `allocatedHostPort`.
    #[serde(default)]
    pub host_port: Option<i64>,
    /// `["tcp"]`, `["udp", "tcp"]`; older Marathon wrote one string.
    #[serde(default, deserialize_with = "protocols")]
    pub protocol: Vec<String>,
    /// `{"VIP_0": "/name:port"}` (older: `[{"key", "value"}]`).
    #[serde(default, deserialize_with = "task_labels")]
    pub labels: BTreeMap<String, String>,
    /// Container networks this endpoint is on; empty: all of them.
    #[serde(default, deserialize_with = "nullable")]
    pub network_names: Vec<String>,
}

/// `instances[]` (Marathon's `PodInstanceStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInstance {
    /// `shop_web.instance-<uuid>`: the prefix of its containers' task ids.
    #[serde(default)]
    pub id: String,
    /// `PENDING`, `STAGING`, `STABLE`, `DEGRADED` or `TERMINAL`.
    #[serde(default)]
    pub status: Option<String>,
    /// The agent: an IP, or a hostname on some clusters.
    #[serde(default)]
    pub agent_hostname: Option<String>,
    /// Mesos agent id (`…-S1`), Marathon ≥ 1.5.
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub networks: Vec<NetworkStatus>,
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<ContainerStatus>,
}

/// `instances[].networks[]`: the instance's addresses on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NetworkStatus {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub addresses: Vec<String>,
}

/// `instances[].containers[]`: one container's Mesos task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// The container's name in the spec.
    #[serde(default)]
    pub name: String,
    /// The Mesos task state: `TASK_RUNNING`, `TASK_KILLING`, …
    #[serde(default)]
    pub status: Option<String>,
    /// The Mesos task id, `<instance id>.<container name>`.
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints: Vec<EndpointStatus>,
    /// `{"name": "healthy", "value": "true"|"false"}` once the task ran.
    #[serde(default, deserialize_with = "nullable")]
    pub conditions: Vec<StatusCondition>,
}

/// `instances[].containers[].endpoints[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub allocated_host_port: Option<i64>,
    /// Only for the endpoint a health check probes.
    #[serde(default)]
    pub healthy: Option<bool>,
}

/// `conditions[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusCondition {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// Any value but `null` (an empty `{}` health check is still one).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(!Value::deserialize(d)?.is_null())
}

/// A protocol list, or one string (`"tcp"`, `"udp,tcp"`).
fn protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Shape {
        One(String),
        List(Vec<String>),
    }
    match Option::<Shape>::deserialize(d) {
        Ok(None) => Ok(Vec::new()),
        Ok(Some(Shape::One(s))) => Ok(s.split(',').map(|p| p.trim().to_owned()).collect()),
        Ok(Some(Shape::List(l))) => Ok(l),
        Err(_) => Err(de::Error::custom(
            "expected a protocol list such as [\"tcp\"] or one string",
        )),
    }
}

/// Why one pod could not be decoded (it is then skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPod {
    /// The pod's `id`, if it had a usable one.
    pub pod_id: Option<String>,
    /// Where in the pod status: `spec.containers[0].endpoints`, or `""`.
    pub path: String,
    pub msg: String,
}

/// Decodes one pod status. On failure the error names the innermost field
/// that is wrong, as [`super::apps::app_from_value`] does for apps.
pub fn pod_from_value(value: &Value) -> Result<PodStatus, BadPod> {
    let bad_id = |msg: String| BadPod {
        pod_id: None,
        path: "id".into(),
        msg,
    };
    let Value::Object(obj) = value else {
        return Err(BadPod {
            pod_id: None,
            path: String::new(),
            msg: format!("expected a pod status object, got {}", kind(value)),
        });
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(bad_id("is empty".into())),
        Some(other) => return Err(bad_id(format!("expected a string, got {}", kind(other)))),
        None => return Err(bad_id("missing".into())),
    };
    PodStatus::deserialize(value).map_err(|e| {
        let (path, msg) =
            locate::<PodStatus>(&id, obj).unwrap_or_else(|| (String::new(), e.to_string()));
        BadPod {
            pod_id: Some(id),
            path,
            msg,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_both_protocol_and_label_shapes_and_nulls() {
        let p = pod_from_value(&json!({
            "id": "/web", "instances": null,
            "spec": {"id": "/web", "networks": null, "containers": [
                {"name": "a", "healthCheck": {"tcp": {"endpoint": "http"}}, "endpoints": [
                    {"name": "http", "containerPort": 80, "protocol": ["udp", "tcp"],
                     "labels": {"VIP_0": "/web:80"}},
                    {"name": "old", "hostPort": 0, "protocol": "tcp",
                     "labels": [{"key": "VIP_0", "value": "/old:81"}]},
                    {"name": "none", "protocol": null, "labels": null}]},
                {"name": "b", "healthCheck": null}]}
        }))
        .unwrap();
        let spec = p.spec.unwrap();
        let c = &spec.containers[0];
        assert!(c.health_check && !spec.containers[1].health_check);
        assert_eq!(c.endpoints[0].protocol, ["udp", "tcp"]);
        assert_eq!(c.endpoints[1].protocol, ["tcp"]);
        assert_eq!(c.endpoints[1].labels["VIP_0"], "/old:81");
        assert_eq!(c.endpoints[1].host_port, Some(0));
        assert!(c.endpoints[2].protocol.is_empty() && c.endpoints[2].labels.is_empty());
        assert!(p.instances.is_empty());
    }

    #[test]
    fn errors_name_the_pod_and_the_field() {
        let e = pod_from_value(&json!({"id": "/web", "spec": {"containers": [
            {"name": "a", "endpoints": [{"name": "x", "containerPort": "80"}]}]}}))
        .unwrap_err();
        assert_eq!(e.pod_id.as_deref(), Some("/web"));
        assert_eq!(e.path, "spec.containers[0].endpoints[0].containerPort");
        let e = pod_from_value(&json!({"id": "/web", "instances": [
            {"id": "i", "containers": [{"name": "a", "endpoints": [{"allocatedHostPort": []}]}]}]}))
        .unwrap_err();
        assert_eq!(
            e.path,
            "instances[0].containers[0].endpoints[0].allocatedHostPort"
        );
        let e = pod_from_value(&json!({"id": "/web", "spec": {"containers": [
            {"endpoints": [{"protocol": 6}]}]}}))
        .unwrap_err();
        assert_eq!(e.path, "spec.containers[0].endpoints[0].protocol");
        assert!(e.msg.contains("protocol list"), "{}", e.msg);
        assert_eq!(pod_from_value(&json!([])).unwrap_err().path, "");
        assert_eq!(pod_from_value(&json!({"id": 5})).unwrap_err().path, "id");
    }
}
