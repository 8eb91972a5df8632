//! The discovery HTTP API (Mesos-DNS's and dcos-net's `/v1/…`) on the agent's
//! metrics listener, read with curl, and zone transfer with dig: all inside the
//! sandbox netns, from the test Marathon.
use std::{thread, time::Duration};

use l4lb_tests::{Agent, FakeMarathon, Sandbox, TaskSpec, redis_app, require_root, wait};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(10);

/// GET `path` until `pred` holds on its JSON (the first catalog may still be
/// on its way); bounded.
fn wait_json(sb: &Sandbox, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait::until(&format!("GET {path}"), BOUND, || {
        let (code, body) = sb.agent_http(path);
        match serde_json::from_str::<Value>(&body) {
            Ok(v) if code == "200" && pred(&v) => Ok(v),
            _ => Err(format!("{code} {body}")),
        }
    })
}

/// curl with headers: (HTTP code, headers + body).
fn curl_headers(sb: &Sandbox, path: &str, extra: &[&str]) -> (String, String) {
    let out = sb
        .in_netns("curl")
        .args(["-s", "-i", "-w", "\n%{http_code}", "--max-time", "5"])
        .args(extra)
        .arg(format!("http://127.0.0.1:62080{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

fn start(sb: &mut Sandbox, extra: &[&str]) -> (FakeMarathon, Agent) {
    start_agent(sb, &[&["--dns-listen", "127.0.0.1:5353"], extra].concat())
}

fn start_agent(sb: &mut Sandbox, extra: &[&str]) -> (FakeMarathon, Agent) {
    let m = FakeMarathon::start(
        sb,
        1,
        json!({"apps": [redis_app("/redis-tutorial", "/redis:6379", &[TaskSpec::new("127.0.0.2", 31256)])]}),
    )
    .unwrap();
    let url = m.url(0);
    let mut args = vec!["--marathon", url.as_str()];
    args.extend_from_slice(extra);
    let agent = Agent::start_with_args(sb, "", &args).unwrap();
    agent.wait_vips(1, BOUND).unwrap();
    (m, agent)
}

/// Mesos-DNS `resolver.go` `RestVersion`/`RestConfig`/`RestHost`/
/// `RestService`/`RestEnumerate` shapes and dcos-net `dcos_rest_SUITE`
/// `json_ok` + `skip` (every path answers) and `dcos_rest_vips_handler` /
/// `dcos_rest_dns_handler` (`/v1/vips` with its ETag, `/v1/records`).
#[test]
fn discovery_http_api_answers_as_the_peers() {
    require_root();
    let mut sb = Sandbox::new("disc-http").unwrap();
    let (_m, _agent) = start(&mut sb, &[]);

    let vips = wait_json(&sb, "/v1/vips", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(
        vips,
        json!([{"vip": "redis.marathon.l4lb.thisdcos.directory:6379", "protocol": "tcp",
                "backend": [{"ip": "127.0.0.2", "port": 31256}]}])
    );

    let v = wait_json(&sb, "/v1/version", |_| true);
    assert_eq!(v["Service"], "Mesos-DNS");
    assert_eq!(v["URL"], "https://github.com/mesosphere/mesos-dns");
    assert!(v["Version"].is_string());

    let c = wait_json(&sb, "/v1/config", |_| true);
    assert_eq!(c["Domain"], "mesos");
    assert_eq!(c["HttpPort"], 62080);
    assert_eq!(c["Port"], 5353);
    assert_eq!(c["TTL"], 60);
    assert_eq!(c["EnumerationOn"], true);

    task_answers(&sb);

    let r = wait_json(&sb, "/v1/records", |_| true);
    assert!(r.as_array().unwrap().contains(&json!({
        "name": "redis.marathon.l4lb.thisdcos.directory",
        "host": vips_ip(&sb),
        "rtype": "A"
    })));

    // ETag, then If-None-Match → 304 with no body.
    let (code, text) = curl_headers(&sb, "/v1/vips", &[]);
    assert_eq!(code, "200");
    let etag = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .unwrap_or_else(|| panic!("no ETag in {text}"))
        .trim()
        .to_string();
    let inm = format!("If-None-Match: {etag}");
    let (code, text) = curl_headers(&sb, "/v1/vips", &["-H", &inm]);
    assert_eq!(code, "304", "{text}");
    assert!(!text.contains("redis"), "{text}");
    let (code, _) = curl_headers(&sb, "/v1/vips", &["-H", "If-None-Match: \"stale\""]);
    assert_eq!(code, "200");
}

/// What `/v1` answers from the redis task's record (hosts, services,
/// enumerate), the same with DNS on and off.
fn task_answers(sb: &Sandbox) {
    let h = wait_json(sb, "/v1/hosts/redis-tutorial.marathon.mesos", |_| true);
    assert_eq!(
        h,
        json!([{"host": "redis-tutorial.marathon.mesos.", "ip": "127.0.0.2"}])
    );
    let h = wait_json(sb, "/v1/hosts/nope.marathon.mesos", |_| true);
    assert_eq!(h, json!([{"host": "", "ip": ""}]));

    let s = wait_json(
        sb,
        "/v1/services/_redis-tutorial._tcp.marathon.mesos",
        |_| true,
    );
    let s0 = &s.as_array().unwrap()[0];
    assert_eq!(s0["service"], "_redis-tutorial._tcp.marathon.mesos");
    assert!(s0["host"].as_str().unwrap().starts_with("redis-tutorial-"));
    assert_eq!(
        (&s0["ip"], &s0["port"]),
        (&json!("127.0.0.2"), &json!("31256"))
    );
    let s = wait_json(sb, "/v1/services/_nope._tcp.marathon.mesos", |_| true);
    assert_eq!(
        s,
        json!([{"service": "", "host": "", "ip": "", "port": ""}])
    );

    let e = wait_json(sb, "/v1/enumerate", |_| true);
    let fw = &e["frameworks"][0];
    assert_eq!(fw["name"], "marathon");
    let task = &fw["tasks"][0];
    assert_eq!(task["name"], "redis-tutorial");
    assert!(task["id"].as_str().unwrap().starts_with("redis-tutorial"));
    assert!(task["records"].as_array().unwrap().iter().any(|r| {
        r == &json!({"name": "redis-tutorial.marathon.mesos.", "host": "127.0.0.2", "rtype": "A"})
    }));
}

/// With the agent's defaults (no DNS, no locality) the Marathon source keeps
/// the task records packed for `/v1` alone, which unpacks them per request:
/// the same answers as with DNS on.
#[test]
fn discovery_http_api_answers_without_dns_from_packed_records() {
    require_root();
    let mut sb = Sandbox::new("disc-packed").unwrap();
    let (_m, _agent) = start_agent(&mut sb, &[]);
    task_answers(&sb);
    let (code, m) = sb.agent_http("/metrics");
    assert_eq!(code, "200");
    let unpack_errors = "l4lb_discovery_unpack_errors_total 0";
    assert!(
        m.lines().any(|l| l == unpack_errors),
        "no {unpack_errors:?} in:\n{m}"
    );
}

fn vips_ip(sb: &Sandbox) -> String {
    let out = sb.dig(&["+short", "redis.marathon.l4lb.thisdcos.directory"]);
    out.trim().to_string()
}

/// AXFR over TCP from an allowed client: SOA first and last, the task and
/// VIP records; UDP AXFR and a client outside `--dns-axfr-allow` are refused.
#[test]
fn axfr_only_for_allowed_clients() {
    require_root();
    let mut sb = Sandbox::new("disc-axfr").unwrap();
    let (_m, _agent) = start(&mut sb, &["--dns-axfr-allow", "127.0.0.1/32"]);
    let out = sb.wait_dig(&["axfr", "mesos"], "the task in the zone", BOUND, |o| {
        o.contains("redis-tutorial.marathon.mesos.")
    });
    let records: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .collect();
    assert!(records.first().unwrap().contains("SOA"), "{out}");
    assert!(records.last().unwrap().contains("SOA"), "{out}");
    assert!(
        out.contains("_redis-tutorial._tcp.marathon.mesos."),
        "{out}"
    );
    let l4lb = sb.dig(&["axfr", "l4lb.thisdcos.directory"]);
    assert!(
        l4lb.contains("redis.marathon.l4lb.thisdcos.directory."),
        "{l4lb}"
    );
    // Not from 127.0.0.2 (outside the /32).
    let other = sb.dig(&["-b", "127.0.0.2", "axfr", "mesos"]);
    assert!(!other.contains("redis-tutorial.marathon.mesos."), "{other}");
    assert!(
        other.contains("Transfer failed") || other.contains("REFUSED"),
        "{other}"
    );
}

#[test]
fn axfr_refused_by_default() {
    require_root();
    let mut sb = Sandbox::new("disc-axfr-no").unwrap();
    let (_m, _agent) = start(&mut sb, &[]);
    thread::sleep(Duration::from_millis(200));
    let out = sb.dig(&["axfr", "mesos"]);
    assert!(!out.contains("redis-tutorial.marathon.mesos."), "{out}");
    assert!(
        out.contains("Transfer failed") || out.contains("REFUSED"),
        "{out}"
    );
    // UDP AXFR: REFUSED.
    let udp = sb.dig(&["+notcp", "axfr", "mesos"]);
    assert!(!udp.contains("redis-tutorial.marathon.mesos."), "{udp}");
}
