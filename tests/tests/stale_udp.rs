//! A connected UDP socket whose backend was removed is destroyed, so
//! the application sees an error and reconnects to a live backend.
//!
//! The connect hook rewrites a UDP connect() from the VIP to one backend, once.
//! When that backend leaves the VIP the agent finds such sockets with sock_diag
//! and destroys them (SOCK_DESTROY: the socket gets ECONNABORTED and is
//! disconnected), but only those the hooks connected THROUGH the VIP (their
//! cookie + backend has a reverse-NAT entry): a socket connected to the
//! backend's address directly is left alone.
//!
//! The applications are small Python 3 programs run inside the sandbox netns
//! and cgroup, bounded by their own deadlines and killed on drop. This crate
//! does not link l4lb-agent (xtask setup must build it without the eBPF
//! toolchain), so the function is reached through the agent binary: `run`
//! (on a config change) and the hidden `debug-destroy-udp` subcommand.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use l4lb_tests::{Agent, Sandbox, agent_bin, require_root, run};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(20);
/// From the config rewrite to the application's error: file watch + debounce
/// (150 ms) + reconcile (grace 20 ms) + the destroy pass (well under 1 ms).
const DESTROY_BOUND: Duration = Duration::from_secs(3);

/// A Python 3 program in the sandbox (netns + cgroup) that prints one JSON
/// object per line; killed and reaped on drop.
struct Py {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Py {
    fn start(sb: &Sandbox, script: &str, args: &[&str]) -> Py {
        let mut cmd = sb.in_cgroup("python3");
        cmd.arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawning python3 in the sandbox");
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Py {
            child,
            stdin,
            lines,
        }
    }

    /// The next JSON line, if one comes within `timeout`.
    fn try_next(&self, timeout: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("python printed {line:?}: {e}")))
    }

    fn next(&self, timeout: Duration) -> Value {
        self.try_next(timeout)
            .unwrap_or_else(|| panic!("python client printed nothing within {timeout:?} (exited?)"))
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shared by both clients: ask(sock, msg) sends msg and returns the id of the
/// testsrv that answered `ID msg`.
const PY_COMMON: &str = r#"
import errno, json, socket, sys, time
def say(**kw):
    print(json.dumps(kw), flush=True)
def ask(s, msg, t=1.0):
    s.settimeout(t)
    s.send(msg.encode())
    end = time.time() + t
    while True:
        s.settimeout(max(0.01, end - time.time()))
        i, _, rest = s.recv(2048).decode().partition(" ")
        if rest == msg:
            return i
def ename(e):
    return errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
def udp(family, to):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.connect(to)
    return s
"#;

/// argv: VIP host, VIP port, {id: [host, port]} of the backends, deadline s.
/// Connects to the VIP (→ backend X) and directly to X, then pings through the
/// VIP every 50 ms until an error; then checks the direct socket and reconnects.
const HOLDER: &str = r#"
vip = (sys.argv[1], int(sys.argv[2]))
addrs = json.loads(sys.argv[3])
deadline = time.time() + float(sys.argv[4])
s = udp(socket.AF_INET, vip)
x = ask(s, "hello")
d = udp(socket.AF_INET, tuple(addrs[x]))
say(event="connected", id=x, direct_id=ask(d, "direct"))
n = 0
while True:
    if time.time() > deadline:
        say(event="timeout", pings=n)
        sys.exit(1)
    try:
        ask(s, "p%d" % n, 0.3)
        n += 1
    except TimeoutError:
        pass
    except OSError as e:
        say(event="error", errno=ename(e), pings=n)
        break
    time.sleep(0.05)
time.sleep(0.2)
so_error = d.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
try:
    direct = ask(d, "direct-after")
except OSError as e:
    direct = "error " + ename(e)
say(event="direct", so_error=so_error, id=direct)
say(event="reconnected", id=ask(udp(socket.AF_INET, vip), "again"))
"#;

#[test]
fn removed_backend_breaks_its_connected_udp_sockets_only() {
    require_root();
    let mut sb = Sandbox::new("staleudp").unwrap();
    let backends = [
        ("a", "127.0.0.2:7001"),
        ("b", "127.0.0.3:7001"),
        ("c", "127.0.0.4:7001"),
    ];
    for (id, addr) in backends {
        sb.spawn_testsrv(id, &[], &[addr]).unwrap();
    }
    let config = |keep: &[&str]| {
        format!(
            "vips:\n  - vip: 11.0.0.1:53\n    protocol: udp\n    backends: [{}]\n",
            keep.join(", ")
        )
    };
    let all: Vec<&str> = backends.iter().map(|(_, a)| *a).collect();
    let agent = Agent::start(&mut sb, &config(&all)).unwrap();
    agent.wait_vips(1, READY).unwrap();

    let addrs: serde_json::Map<String, Value> = backends
        .iter()
        .map(|(id, a)| {
            let (host, port) = a.split_once(':').unwrap();
            (id.to_string(), json!([host, port.parse::<u16>().unwrap()]))
        })
        .collect();
    let py = Py::start(
        &sb,
        &format!("{PY_COMMON}{HOLDER}"),
        &["11.0.0.1", "53", &Value::Object(addrs).to_string(), "20"],
    );
    let first = py.next(READY);
    assert_eq!(first["event"], "connected", "{first}");
    let x = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["direct_id"], x.as_str(), "{first}");
    let x_addr = backends.iter().find(|(id, _)| *id == x).unwrap().1;

    // Remove X from the VIP (X itself keeps running: only the table changes).
    let keep: Vec<&str> = all.iter().copied().filter(|a| *a != x_addr).collect();
    let removed_at = Instant::now();
    agent.rewrite_config(&config(&keep)).unwrap();

    // Waits a little longer than the bound, to tell "late" from "never".
    let Some(ev) = py.try_next(DESTROY_BOUND * 2) else {
        panic!(
            "the VIP socket to the removed backend {x} saw no error within {:?}\nlog:\n{}",
            DESTROY_BOUND * 2,
            agent.log()
        );
    };
    let took = removed_at.elapsed();
    assert_eq!(ev["event"], "error", "{ev}\nlog:\n{}", agent.log());
    assert!(
        took <= DESTROY_BOUND,
        "error only {took:?} after removing {x} (bound {DESTROY_BOUND:?}): {ev}\nlog:\n{}",
        agent.log()
    );
    eprintln!("stale_udp: {} {took:?} after removing {x}", ev["errno"]);
    // recv() while destroyed: ECONNABORTED; send() on the now unconnected socket: EDESTADDRREQ.
    assert!(
        ev["errno"] == "ECONNABORTED" || ev["errno"] == "EDESTADDRREQ",
        "unexpected error {ev}"
    );

    // The socket connected to X directly (same process, same cgroup, no VIP) is untouched.
    let direct = py.next(READY);
    assert_eq!(
        direct,
        json!({"event": "direct", "so_error": 0, "id": x}),
        "direct socket to {x_addr} was touched"
    );

    // A new socket through the VIP reaches a live backend.
    let again = py.next(READY);
    assert_eq!(again["event"], "reconnected", "{again}");
    let y = again["id"].as_str().unwrap();
    assert!(
        y != x && backends.iter().any(|(id, _)| *id == y),
        "reconnected to {y} (removed: {x})"
    );
    let v = sb
        .probe_udp("11.0.0.1:53", 30, &["--mode", "connected"])
        .unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(
        v["counts"].get(x.as_str()),
        None,
        "new sockets still reach the removed {x}: {v}"
    );
}

/// argv: none. Opens one socket of each kind, prints their ids, waits for a
/// line on stdin, then reports for each whether it still works, and keeps
/// them open until the next line (or until killed).
const KINDS: &str = r#"
socks = {
    "via_vip4": udp(socket.AF_INET, ("11.0.0.1", 53)),
    "via_vip4_dual_stack": udp(socket.AF_INET6, ("::ffff:11.0.0.1", 53)),
    "via_vip6": udp(socket.AF_INET6, ("fd01:c::1", 53)),
    "direct4": udp(socket.AF_INET, ("127.0.0.2", 7001)),
    "direct6": udp(socket.AF_INET6, ("fd00:b::2", 7001)),
    "other_vip": udp(socket.AF_INET, ("11.0.0.2", 53)),
}
unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
unconnected.settimeout(1.0)
unconnected.sendto(b"u0", ("11.0.0.1", 53))
ids = {n: ask(s, "hello") for n, s in socks.items()}
ids["unconnected"] = unconnected.recv(2048).decode().split(" ")[0]
say(event="ready", ids=ids)
sys.stdin.readline()
out = {}
for n, s in socks.items():
    try:
        out[n] = ask(s, "again")
    except OSError as e:
        out[n] = "error " + ename(e)
try:
    unconnected.sendto(b"u1", ("11.0.0.1", 53))
    out["unconnected"] = unconnected.recv(2048).decode().split(" ")[0]
except OSError as e:
    out["unconnected"] = "error " + ename(e)
say(event="checked", results=out)
sys.stdin.readline()  # keep the sockets open until told
"#;

/// Runs `l4lb-agent debug-destroy-udp ARGS` inside the netns (not the cgroup).
fn destroy(sb: &Sandbox, args: &[&str]) -> Value {
    let stdout = run(sb
        .in_netns(agent_bin())
        .arg("debug-destroy-udp")
        .arg("--pin-root")
        .arg(sb.pin_root())
        .args(args)
        .stdin(Stdio::null()))
    .unwrap_or_else(|e| panic!("debug-destroy-udp {args:?}: {e:#}"));
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("debug-destroy-udp printed {stdout:?}: {e}"))
}

fn report(found: u64, destroyed: u64, not_ours: u64) -> Value {
    json!({"found": found, "destroyed": destroyed, "vanished": 0, "not_ours": not_ours, "errors": []})
}

/// The destroy pass itself, exactly: IPv4, IPv6 and dual-stack sockets
/// connected through a VIP to a listed backend go; sockets connected to the
/// same backends directly, through a VIP to another backend, or not connected
/// at all stay; and a VIP filter that matches nothing destroys nothing.
#[test]
fn destroy_pass_filters_by_backend_and_reverse_nat() {
    require_root();
    let mut sb = Sandbox::new("sdpass").unwrap();
    sb.add_addr("fd00:b::2/128").unwrap();
    sb.spawn_testsrv("x4", &[], &["127.0.0.2:7001"]).unwrap();
    sb.spawn_testsrv("o4", &[], &["127.0.0.3:7001"]).unwrap();
    sb.spawn_testsrv("x6", &[], &["[fd00:b::2]:7001"]).unwrap();
    let agent = Agent::start(
        &mut sb,
        "vips:
  - vip: 11.0.0.1:53
    protocol: udp
    backends: [127.0.0.2:7001]
  - vip: 11.0.0.2:53
    protocol: udp
    backends: [127.0.0.3:7001]
  - vip: '[fd01:c::1]:53'
    protocol: udp
    backends: ['[fd00:b::2]:7001']
",
    )
    .unwrap();
    agent.wait_vips(3, READY).unwrap();

    let mut py = Py::start(&sb, &format!("{PY_COMMON}{KINDS}"), &[]);
    let ready = py.next(READY);
    assert_eq!(
        ready,
        json!({"event": "ready", "ids": {
            "via_vip4": "x4", "via_vip4_dual_stack": "x4", "via_vip6": "x6",
            "direct4": "x4", "direct6": "x6", "other_vip": "o4", "unconnected": "x4",
        }}),
        "{}",
        agent.log()
    );
    let listed = [
        "--backend",
        "127.0.0.2:7001",
        "--backend",
        "[fd00:b::2]:7001",
    ];

    // Through another VIP only: the three VIP sockets and the two direct ones
    // are connected to a listed backend, none qualifies.
    let r = destroy(&sb, &[&listed[..], &["--vip", "11.0.0.9:53"]].concat());
    assert_eq!(r, report(0, 0, 5), "VIP filter");

    let r = destroy(&sb, &listed);
    assert_eq!(r, report(3, 3, 2), "destroy pass");

    py.say("check");
    let checked = py.next(READY);
    let results = &checked["results"];
    for n in ["via_vip4", "via_vip4_dual_stack", "via_vip6"] {
        let r = results[n].as_str().unwrap_or_default();
        assert!(
            r == "error ECONNABORTED" || r == "error EDESTADDRREQ",
            "{n} should have been destroyed: {checked}"
        );
    }
    for (n, id) in [
        ("direct4", "x4"),
        ("direct6", "x6"),
        ("other_vip", "o4"),
        ("unconnected", "x4"),
    ] {
        assert_eq!(results[n], id, "{n} should still work: {checked}");
    }

    // Nothing left to do: the destroyed sockets are no longer connected.
    let r = destroy(&sb, &listed);
    assert_eq!(r, report(0, 0, 2), "second pass");
    py.say("exit");
}
