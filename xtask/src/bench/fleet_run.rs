//! One fleet of `bench fleet`: N simulated nodes (`l4lb_tests::cluster`),
//! each agent following one fake Marathon of `apps` apps; changes, a steady
//! stretch and two resync rounds, measured at the fake Marathon (requests,
//! body bytes by kind) and in each agent's log (when its maps hold a change).
//!
//! Safety: everything runs in the cluster's namespaces and child cgroups;
//! the apps' task addresses (127.1.0.x) are never connected to; every wait
//! has a deadline; SIGHUPs go to the agents this run started, by pid.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::{Cluster, ClusterSpec};
use serde_json::Value;

use super::{
    agent_log::{LogTail, check_line, field, is_apply, is_read, log_time, num, unix_now},
    control::{gen_apps, max_slots},
    procfs::{cpu_seconds, status_mb},
};
use crate::interrupt;

/// A change not in every node's maps by then is counted as missed.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
const RESYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// What one fleet size is run with.
#[derive(Clone, Debug)]
pub(crate) struct FleetSpec {
    pub nodes: usize,
    pub apps: u32,
    pub tasks: u32,
    pub changes: u32,
    pub steady: Duration,
    pub resync_secs: u64,
    pub jitter_pct: u8,
}

/// Requests and body bytes the fake Marathon served, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Served {
    pub app_list: (f64, f64),
    pub app: (f64, f64),
    pub events_bytes: f64,
    pub other: (f64, f64),
}

impl Served {
    fn read(c: &Cluster) -> Result<Served> {
        let v = c.marathon().served()?;
        let pair = |k: &str| -> (f64, f64) {
            let f = |x: &str| v[k][x].as_f64().unwrap_or(f64::NAN);
            (f("requests"), f("bytes"))
        };
        let (pr, pb) = pair("pods");
        let (or, ob) = pair("other");
        Ok(Served {
            app_list: pair("appList"),
            app: pair("app"),
            events_bytes: pair("events").1,
            other: (pr + or, pb + ob),
        })
    }

    fn minus(self, o: Served) -> Served {
        let d = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0, a.1 - b.1);
        Served {
            app_list: d(self.app_list, o.app_list),
            app: d(self.app, o.app),
            events_bytes: self.events_bytes - o.events_bytes,
            other: d(self.other, o.other),
        }
    }

    pub(crate) fn requests(&self) -> f64 {
        self.app_list.0 + self.app.0 + self.other.0
    }

    pub(crate) fn bytes(&self) -> f64 {
        self.app_list.1 + self.app.1 + self.events_bytes + self.other.1
    }
}

/// A round of N full re-reads (SIGHUP to every agent).
#[derive(Clone, Debug, Default)]
pub(crate) struct Round {
    /// Each agent's `apps read` took_ms (GET + decode as it saw it).
    pub read_ms: Vec<f64>,
    /// First signal -> the last agent's apply, s.
    pub wall_s: f64,
    /// The fake Marathon's CPU seconds over the round.
    pub server_cpu_s: f64,
}

/// What one fleet measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fleet {
    pub nodes: usize,
    /// Size of one full `/v2/apps?embed=apps.tasks` body, bytes.
    pub body_bytes: f64,
    /// Cluster start -> every agent lists every app's VIP, s.
    pub ready_s: f64,
    /// Per change: each node's change -> maps, ms (NaN: missed).
    pub per_change: Vec<Vec<f64>>,
    /// Served over all the changes.
    pub changes_served: Served,
    /// Served over the steady stretch, and its length.
    pub steady: Served,
    pub steady_s: f64,
    pub stampede: Round,
    pub spread: Round,
    /// The spread round's window, s.
    pub spread_window_s: f64,
    /// Agents' RSS at the end, MB.
    pub rss_mb: Vec<f64>,
}

pub(crate) fn run_fleet(s: &FleetSpec, deadline: Instant) -> Result<Fleet> {
    let t0 = Instant::now();
    let c = start(s)?;
    let mut f = Fleet {
        nodes: s.nodes,
        ready_s: t0.elapsed().as_secs_f64(),
        ..Fleet::default()
    };
    let mut tails = tails(&c)?;
    println!(
        "fleet of {}: every agent lists {} VIPs after {:.1} s",
        s.nodes, s.apps, f.ready_s
    );
    let before = Served::read(&c)?;
    for i in 0..s.changes {
        check(deadline)?;
        f.per_change.push(change(&c, &mut tails, i)?);
        // A straggling second read of this change lands before the next.
        thread::sleep(Duration::from_millis(100));
    }
    f.changes_served = Served::read(&c)?.minus(before);

    let before = Served::read(&c)?;
    let start = Instant::now();
    while start.elapsed() < s.steady {
        check(deadline)?;
        drain(&mut tails)?;
        thread::sleep(Duration::from_millis(200));
    }
    f.steady_s = start.elapsed().as_secs_f64();
    f.steady = Served::read(&c)?.minus(before);

    let one = Served::read(&c)?;
    f.stampede = round(&c, &mut tails, Duration::ZERO)?;
    let list = Served::read(&c)?.minus(one).app_list;
    f.body_bytes = list.1 / list.0.max(1.0);
    let window = Duration::from_secs(s.resync_secs).mul_f64(f64::from(s.jitter_pct) / 100.0);
    f.spread_window_s = window.as_secs_f64();
    check(deadline)?;
    f.spread = round(&c, &mut tails, window)?;
    f.rss_mb = c
        .nodes()
        .iter()
        .map(|n| status_mb(n.agent.pid(), "VmRSS").unwrap_or(f64::NAN))
        .collect();
    Ok(f)
}

fn check(deadline: Instant) -> Result<()> {
    interrupt::check()?;
    if Instant::now() >= deadline {
        bail!("bench fleet: out of time");
    }
    Ok(())
}

/// The cluster: one VIP with a backend per node (the harness's readiness
/// check) plus `apps - 1` apps of `tasks` tasks; maps sized for them.
fn start(s: &FleetSpec) -> Result<Cluster> {
    let mut extra = gen_apps(s.apps.saturating_sub(1), s.tasks);
    let extra = extra["apps"].take();
    let extra = extra.as_array().cloned().unwrap_or_default();
    let slots = max_slots(s.apps, s.tasks.max(s.nodes as u32), true).to_string();
    let services = (s.apps + 16).to_string();
    let backends = (s.apps * s.tasks + s.nodes as u32 + 64).to_string();
    let resync = s.resync_secs.to_string();
    let jitter = s.jitter_pct.to_string();
    let spec = ClusterSpec::new(&format!("bf{}", s.nodes), s.nodes)
        .extra_apps(extra)
        .maps(&[
            "--max-services",
            &services,
            "--max-backends",
            &backends,
            "--max-slots",
            &slots,
        ])
        .agent_args(&[
            "--marathon-resync-secs",
            &resync,
            "--marathon-resync-jitter-pct",
            &jitter,
        ]);
    let bound = spec.ready_bound + Duration::from_secs(60);
    let c = Cluster::new(spec)?;
    let t = Instant::now();
    for n in c.nodes() {
        let left = bound.saturating_sub(t.elapsed());
        n.agent
            .wait_vips(s.apps as usize, left)
            .with_context(|| format!("node {}'s agent", n.index))?;
    }
    Ok(c)
}

/// One log tail per agent, past what is already written.
fn tails(c: &Cluster) -> Result<Vec<LogTail>> {
    c.nodes()
        .iter()
        .map(|n| {
            let mut t = LogTail::new(n.agent.log_path());
            t.lines()?;
            Ok(t)
        })
        .collect()
}

fn drain(tails: &mut [LogTail]) -> Result<()> {
    for t in tails {
        for l in t.lines()? {
            check_line(&l)?;
        }
    }
    Ok(())
}

/// When the maps started serving the table of this apply line (unix s).
fn serving_since(l: &str) -> Option<f64> {
    let at = log_time(l)?;
    Some(at - num(l, "serving_for_us").unwrap_or(0) as f64 / 1e6)
}

/// Change `i`: a task of app `/app-k` turns unhealthy (even `i`) or
/// healthy again (odd `i`, the same task); each node's time from the
/// control call to its maps serving the event's table.
fn change(c: &Cluster, tails: &mut [LogTail], i: u32) -> Result<Vec<f64>> {
    let task = change_task(c, i)?;
    drain(tails)?;
    let fired = unix_now();
    c.marathon().set_health(&task, Some(i % 2 == 1))?;
    let start = Instant::now();
    let mut got = vec![f64::NAN; tails.len()];
    while got.iter().any(|g| g.is_nan()) && start.elapsed() < CHANGE_TIMEOUT {
        for (t, g) in tails.iter_mut().zip(got.iter_mut()) {
            for l in t.lines()? {
                check_line(&l)?;
                if g.is_nan()
                    && is_apply(&l)
                    && field(&l, "event_to_maps_us").is_some()
                    && let Some(at) = serving_since(&l)
                {
                    *g = (at - fired) * 1000.0;
                }
            }
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(2));
    }
    Ok(got)
}

/// The id of the task change `i` flips: the first task of a different app
/// for each down/up pair.
fn change_task(c: &Cluster, i: u32) -> Result<String> {
    let apps = c.marathon().apps()?;
    let list = apps["apps"].as_array().context("no apps")?;
    let filler: Vec<&Value> = list
        .iter()
        .filter(|a| a["id"].as_str().is_some_and(|id| id.starts_with("/app-")))
        .collect();
    if filler.is_empty() {
        bail!("no app to change (--apps 1?)");
    }
    let app = filler[(i as usize / 2 * 7919) % filler.len()];
    app["tasks"][0]["id"]
        .as_str()
        .map(str::to_string)
        .context("app without a task")
}

/// SIGHUP to every agent, spaced evenly over `window` (zero: all at once);
/// waits until each applied that full re-read.
fn round(c: &Cluster, tails: &mut [LogTail], window: Duration) -> Result<Round> {
    drain(tails)?;
    let server = c.marathon().pid();
    let cpu0 = cpu_seconds(server)?;
    let n = c.nodes().len();
    let step = window / n.max(1) as u32;
    let start = Instant::now();
    let mut r = Round::default();
    let mut done = vec![false; n];
    let mut sent = 0;
    while done.iter().any(|d| !d) {
        while sent < n && start.elapsed() >= step * sent as u32 {
            c.node(sent).agent.sighup();
            sent += 1;
        }
        for (i, t) in tails.iter_mut().enumerate() {
            for l in t.lines()? {
                check_line(&l)?;
                if i < sent && is_read(&l) && field(&l, "apps").is_none_or(|a| a.contains("all")) {
                    r.read_ms.push(num(&l, "took_ms").unwrap_or(0) as f64);
                }
                if i < sent
                    && is_apply(&l)
                    && field(&l, "trigger").is_some_and(|t| t.contains("SIGHUP"))
                {
                    done[i] = true;
                }
            }
        }
        if start.elapsed() > window + RESYNC_TIMEOUT {
            bail!("full re-reads not applied within {RESYNC_TIMEOUT:?}: {done:?}");
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(5));
    }
    r.wall_s = start.elapsed().as_secs_f64();
    r.server_cpu_s = cpu_seconds(server)? - cpu0;
    Ok(r)
}
