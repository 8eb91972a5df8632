//! Wire types of Marathon's `GET /v2/apps?embed=apps.tasks`, and the lenient
//! per-app decoding the source needs: one malformed app must not cost the
//! whole table, so the body is split into apps first and each app is decoded
//! on its own ([`app_from_value`]).
//!
//! The types take what the datapath and DNS need and ignore every other field.
//! Everything but `App::id` is optional, and `null` reads as absent/empty
//! (Marathon writes `"container": null`). Port numbers are `i64`, not `u16`:
//! a port out of range then costs one port (with a warning naming it, see
//! `parse`), not the whole app.
use std::{collections::BTreeMap, fmt, net::IpAddr, sync::Arc};

use serde::{Deserialize, Deserializer, de};
use serde_json::{Map, Value};

use crate::hosts::{AgentAt, parse_agent_host};
use crate::intern::intern;

/// The response body: `{"apps": [...]}`, each app still undecoded.
#[derive(Debug, Deserialize)]
pub struct AppsBody {
    pub apps: Vec<Value>,
}

/// One Marathon app (`/v2/apps` entry).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Absolute path, `/shop/web`.
    pub id: String,
    #[serde(default)]
    pub instances: Option<i64>,
    /// Host networking's ports.
    #[serde(default, deserialize_with = "nullable")]
    pub port_definitions: Vec<PortDefinition>,
    #[serde(default)]
    pub container: Option<Container>,
    /// Empty: host networking (or the legacy `container.docker.network`).
    #[serde(default, deserialize_with = "nullable")]
    pub networks: Vec<Network>,
    /// Only their presence matters here: it makes a result mandatory.
    #[serde(default, deserialize_with = "nullable")]
    pub health_checks: Vec<HealthCheck>,
    /// App labels; Mesos copies them onto every task, so legacy
    /// `vip_PORT<n>` labels may sit here too.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub tasks: Vec<Task>,
}

/// `portDefinitions[]` (host networking).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    /// The service port (not where tasks listen: that is `Task::ports`).
    #[serde(default)]
    pub port: Option<i64>,
    /// `tcp`, `udp` or `udp,tcp`; absent means tcp.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// `container`: port mappings for container and container/bridge networking.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `DOCKER` or `MESOS`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub port_mappings: Vec<PortMapping>,
    /// Pre-1.5 apps keep networking and port mappings here.
    #[serde(default)]
    pub docker: Option<Docker>,
}

/// `container.docker` of pre-1.5 apps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Docker {
    /// `HOST`, `BRIDGE` or `USER`.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub port_mappings: Vec<PortMapping>,
}

/// `container.portMappings[]` / `container.docker.portMappings[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default)]
    pub container_port: Option<i64>,
    /// Present (0 = Marathon picks one) when the port is mapped on the agent;
    /// absent on container networks means "container IP only". In bridge
    /// mode every mapping gets a host port, present or not.
    #[serde(default)]
    pub host_port: Option<i64>,
    #[serde(default)]
    pub service_port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// `networks[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Network {
    /// `host`, `container` or `container/bridge`.
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `healthChecks[]`: the details are Marathon's business (an object each,
/// none of its fields read).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct HealthCheck {}

/// `tasks[]` of an app embedded with `apps.tasks`. A full read decodes
/// 50,000 of them: the fields a task record keeps are parsed as they are
/// read, with no copy of their text (see [`Text`], [`TaskState`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    #[serde(default)]
    pub id: String,
    /// The agent: an IP, or a hostname on some clusters.
    #[serde(default)]
    pub host: Option<Text<AgentAt>>,
    #[serde(default, deserialize_with = "nullable")]
    pub ip_addresses: Vec<IpAddress>,
    /// Host ports, one per host-mapped port in definition/mapping order.
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<i64>,
    /// Shared with every record on the same agent.
    #[serde(default, deserialize_with = "interned")]
    pub slave_id: Option<Arc<str>>,
    #[serde(default, deserialize_with = "nullable")]
    pub state: TaskState,
    #[serde(default, deserialize_with = "nullable")]
    pub health_check_results: HealthResults,
    /// Legacy task labels (`vip_PORT0`). Marathon's own task JSON has none;
    /// Mesos writes them as `[{"key": k, "value": v}]`, so both shapes read.
    #[serde(default, deserialize_with = "task_labels")]
    pub labels: BTreeMap<String, String>,
    /// The task's zone (Marathon ≥ 1.6 with fault domains), any JSON here:
    /// `zone::task_zone` keeps a bounded string and warns about the rest.
    #[serde(default)]
    pub zone: Option<serde_json::Value>,
}

/// `tasks[].state`: only the two states that make a task a backend are
/// told apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Killing,
    /// Staging, finished, failed, …, or none.
    #[default]
    Other,
}

/// `tasks[].ipAddresses[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    #[serde(default)]
    pub ip_address: Option<Text<IpAddr>>,
}

/// A string field parsed while it is read: its text is kept only when it
/// does not parse, for the warning that quotes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text<T> {
    Ok(T),
    Bad(Box<str>),
}

/// What a [`Text`] field parses into.
pub trait FromText: Sized {
    fn from_text(s: &str) -> Option<Self>;
}

impl FromText for IpAddr {
    fn from_text(s: &str) -> Option<IpAddr> {
        s.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
    }
}

impl FromText for AgentAt {
    fn from_text(s: &str) -> Option<AgentAt> {
        parse_agent_host(s)
    }
}

impl<T> Text<T> {
    /// The text that did not parse (`""` for a value that did).
    pub fn bad_text(&self) -> &str {
        match self {
            Text::Ok(_) => "",
            Text::Bad(s) => s,
        }
    }
}

/// Hands a string's text to `f` without a copy (serde_json copies only a
/// text with escapes, into its scratch buffer).
struct StrVisitor<F>(F);

impl<T, F: FnOnce(&str) -> T> de::Visitor<'_> for StrVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        Ok((self.0)(s))
    }
}

impl<'de, T: FromText> Deserialize<'de> for Text<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(|s: &str| match T::from_text(s) {
            Some(v) => Text::Ok(v),
            None => Text::Bad(s.into()),
        }))
    }
}

impl<'de> Deserialize<'de> for TaskState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(|s: &str| match s {
            "TASK_RUNNING" => TaskState::Running,
            "TASK_KILLING" => TaskState::Killing,
            _ => TaskState::Other,
        }))
    }
}

/// A string interned as it is read (no copy of its own).
fn interned<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
    struct Interned(Arc<str>);
    impl<'de> Deserialize<'de> for Interned {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(StrVisitor(|s: &str| Interned(intern(s))))
        }
    }
    Ok(Option::<Interned>::deserialize(d)?.map(|i| i.0))
}

/// `tasks[].healthCheckResults[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct HealthCheckResult {
    #[serde(default)]
    pub alive: Option<bool>,
}

/// `tasks[].healthCheckResults`, read as what a task's weight needs: how
/// many results there are and how many say alive (a vector of them was an
/// allocation per task).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthResults {
    pub count: usize,
    /// Results whose `alive` is `true`.
    pub alive: usize,
}

impl HealthResults {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every result says alive (true when there is none).
    pub fn all_alive(&self) -> bool {
        self.alive == self.count
    }
}

impl<'de> Deserialize<'de> for HealthResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Results;
        impl<'de> de::Visitor<'de> for Results {
            type Value = HealthResults;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence") // a `Vec`'s words, for the same messages
            }

            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<HealthResults, A::Error> {
                let mut out = HealthResults::default();
                while let Some(r) = seq.next_element::<HealthCheckResult>()? {
                    out.count += 1;
                    out.alive += usize::from(r.alive == Some(true));
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Results)
    }
}

/// `null` reads as the type's default, as an absent field does.
pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Labels as a map (Marathon) or a `[{key, value}]` list (Mesos).
pub(super) fn task_labels<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    struct Pair {
        key: String,
        #[serde(default)]
        value: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Shape {
        Map(BTreeMap<String, String>),
        List(Vec<Pair>),
    }
    match Option::<Shape>::deserialize(d) {
        Ok(None) => Ok(BTreeMap::new()),
        Ok(Some(Shape::Map(m))) => Ok(m),
        Ok(Some(Shape::List(l))) => Ok(l.into_iter().map(|p| (p.key, p.value)).collect()),
        Err(_) => Err(de::Error::custom(
            "expected labels as {\"key\": \"value\", …} or [{\"key\": …, \"value\": …}]",
        )),
    }
}

/// Why one app of the list could not be decoded (it is then skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadApp {
    /// The app's `id`, if it had a usable one.
    pub app_id: Option<String>,
    /// Where in the app: `portDefinitions[0].labels.VIP_0`, or `""` for the
    /// app value itself.
    pub path: String,
    pub msg: String,
}

/// Decodes one entry of `apps`. On failure the error names the innermost
/// field that is wrong (`portDefinitions`, `tasks[2].ports[0]`, …), which
/// serde_json's own error does not.
pub fn app_from_value(value: &Value) -> Result<App, BadApp> {
    let Value::Object(obj) = value else {
        return Err(BadApp {
            app_id: None,
            path: String::new(),
            msg: format!("expected an app object, got {}", kind(value)),
        });
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(bad_id("is empty")),
        Some(other) => return Err(bad_id(&format!("expected a string, got {}", kind(other)))),
        None => return Err(bad_id("missing")),
    };
    match App::deserialize(value) {
        Ok(app) => Ok(app),
        Err(e) => {
            let (path, msg) =
                locate::<App>(&id, obj).unwrap_or_else(|| (String::new(), e.to_string()));
            Err(BadApp {
                app_id: Some(id),
                path,
                msg,
            })
        }
    }
}

fn bad_id(msg: &str) -> BadApp {
    BadApp {
        app_id: None,
        path: "id".into(),
        msg: msg.into(),
    }
}

/// JSON type name for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Finds the field that makes `T` (an [`App`], or a pod's status) fail by
/// decoding a value made of `id` and one field at a time, then narrowing
/// into that field's list items and object keys. Works because every field
/// but `id` is optional at every level, so a part that decodes alone never
/// fails only in company. Runs only on failure.
pub(super) fn locate<T: de::DeserializeOwned>(
    id: &str,
    obj: &Map<String, Value>,
) -> Option<(String, String)> {
    for (key, value) in obj {
        if key == "id" {
            continue;
        }
        let wrap = |x: Value| {
            let mut m = Map::new();
            m.insert("id".into(), Value::String(id.into()));
            m.insert(key.clone(), x);
            Value::Object(m)
        };
        if let Err(e) = T::deserialize(&wrap(value.clone())) {
            return Some(narrow::<T>(key.clone(), value, &wrap, e.to_string()));
        }
    }
    None
}

/// `value` at `path` fails (with `msg`) once wrapped by `wrap`: descend into
/// the first of its items or keys that fails alone, unless the container
/// itself is the wrong type (an empty one fails too: `tasks: {…}`).
fn narrow<T: de::DeserializeOwned>(
    path: String,
    value: &Value,
    wrap: &dyn Fn(Value) -> Value,
    msg: String,
) -> (String, String) {
    let empty = match value {
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(Map::new()),
        _ => return (path, msg),
    };
    if T::deserialize(&wrap(empty)).is_err() {
        return (path, msg);
    }
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let inner = |x: Value| wrap(Value::Array(vec![x]));
                if let Err(e) = T::deserialize(&inner(item.clone())) {
                    return narrow::<T>(format!("{path}[{i}]"), item, &inner, e.to_string());
                }
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let inner = |x: Value| {
                    let mut m = Map::new();
                    m.insert(key.clone(), x);
                    wrap(Value::Object(m))
                };
                if let Err(e) = T::deserialize(&inner(item.clone())) {
                    return narrow::<T>(format!("{path}.{key}"), item, &inner, e.to_string());
                }
            }
        }
        _ => {}
    }
    (path, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bad(v: Value) -> BadApp {
        app_from_value(&v).unwrap_err()
    }

    #[test]
    fn decodes_documented_shapes_and_nulls() {
        let app = app_from_value(&json!({
            "id": "/a", "container": null, "networks": null, "labels": null,
            "portDefinitions": [{"port": 1, "labels": null}],
            "tasks": [{"id": "t", "ports": null, "labels": [{"key": "vip_PORT0", "value": "tcp://a:1"}]}],
            "somethingNew": {"x": 1}
        }))
        .unwrap();
        assert_eq!(app.id, "/a");
        assert!(app.container.is_none() && app.networks.is_empty());
        assert_eq!(app.port_definitions[0].port, Some(1));
        assert_eq!(app.tasks[0].labels["vip_PORT0"], "tcp://a:1");
        let app = app_from_value(&json!({"id": "/a", "tasks": [{"labels": {"k": "v"}}]})).unwrap();
        assert_eq!(app.tasks[0].labels["k"], "v");
    }

    #[test]
    fn errors_name_the_innermost_field() {
        let e = bad(json!({"id": "/a", "portDefinitions": "80"}));
        assert_eq!(e.app_id.as_deref(), Some("/a"));
        assert_eq!(e.path, "portDefinitions");
        assert!(e.msg.contains("expected a sequence"), "{}", e.msg);

        let e =
            bad(json!({"id": "/a", "portDefinitions": [{"port": 1}, {"labels": {"VIP_0": 5}}]}));
        assert_eq!(e.path, "portDefinitions[1].labels.VIP_0");
        assert!(e.msg.contains("expected a string"), "{}", e.msg);

        let e = bad(json!({"id": "/a", "tasks": [{"id": "t", "ports": [1, "x"]}]}));
        assert_eq!(e.path, "tasks[0].ports[1]");

        let e = bad(json!({"id": "/a", "container": {"docker": {"portMappings": [null]}}}));
        assert_eq!(e.path, "container.docker.portMappings[0]");

        // The container's own type is wrong: no descending into it.
        let e = bad(json!({"id": "/a", "tasks": {"id": "t"}}));
        assert_eq!(e.path, "tasks");
        assert!(e.msg.contains("expected a sequence"), "{}", e.msg);
        let e = bad(json!({"id": "/a", "container": "DOCKER"}));
        assert_eq!(e.path, "container");
        assert!(e.msg.contains("expected struct Container"), "{}", e.msg);

        let e = bad(json!({"id": "/a", "tasks": [{"labels": 3}]}));
        assert_eq!(e.path, "tasks[0].labels");
        assert!(e.msg.contains("expected labels"), "{}", e.msg);
    }

    #[test]
    fn task_fields_parse_as_they_are_read() {
        let app = app_from_value(&json!({"id": "/a", "tasks": [
            {"id": "t0", "state": "TASK_RUNNING", "host": " 10.0.0.1 ", "slaveId": "s-1",
             "ipAddresses": [{"ipAddress": "::ffff:10.0.0.2"}, {"ipAddress": "10.0.0.300"}]},
            {"id": "t1", "state": "TASK_KILLING", "host": "Agent-1.", "slaveId": "s-1"},
            {"id": "t2", "state": null, "host": "not a host", "ipAddresses": [{"ipAddress": null}]},
            {"id": "t3", "state": "TASK_STAGING"}
        ]}))
        .unwrap();
        let t = &app.tasks;
        let states: Vec<TaskState> = t.iter().map(|t| t.state).collect();
        use TaskState::*;
        assert_eq!(states, [Running, Killing, Other, Other]);
        assert_eq!(
            t[0].host,
            Some(Text::Ok(AgentAt::Ip("10.0.0.1".parse().unwrap())))
        );
        assert_eq!(t[1].host, Some(Text::Ok(AgentAt::Name("agent-1".into()))));
        assert_eq!(t[2].host, Some(Text::Bad("not a host".into())));
        assert_eq!(t[2].host.as_ref().map(Text::bad_text), Some("not a host"));
        let ips: Vec<_> = t[0]
            .ip_addresses
            .iter()
            .map(|a| a.ip_address.clone())
            .collect();
        // Mapped IPv4 is canonical; a bad address keeps its text for the warning.
        let v4 = "10.0.0.2".parse().unwrap();
        assert_eq!(
            ips,
            [Some(Text::Ok(v4)), Some(Text::Bad("10.0.0.300".into()))]
        );
        assert_eq!(t[2].ip_addresses[0].ip_address, None);
        // One agent id, shared by the tasks on it.
        let (a, b) = (
            t[0].slave_id.clone().unwrap(),
            t[1].slave_id.clone().unwrap(),
        );
        assert!(std::sync::Arc::ptr_eq(&a, &b) && &*a == "s-1");
        // A text with escapes reads as its value (serde_json unescapes it).
        let escaped = br#"{"id": "t", "state": "TASK_RUNNING", "slaveId": "s\/2"}"#;
        let task: Task = serde_json::from_slice(escaped).unwrap();
        assert_eq!(
            (task.state, task.slave_id.as_deref()),
            (Running, Some("s/2"))
        );
        let e = bad(json!({"id": "/a", "tasks": [{"id": "t", "state": 3}]}));
        assert_eq!(e.path, "tasks[0].state");
        assert!(e.msg.contains("expected a string"), "{}", e.msg);
    }

    #[test]
    fn bad_app_values() {
        let e = bad(json!("redis"));
        assert_eq!((e.app_id, e.path.as_str()), (None, ""));
        assert_eq!(e.msg, "expected an app object, got a string");
        assert_eq!(bad(json!({})).path, "id");
        assert_eq!(bad(json!({"id": 3})).msg, "expected a string, got a number");
        assert_eq!(bad(json!({"id": " "})).msg, "is empty");
    }
}
