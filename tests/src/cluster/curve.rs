//! What a stream of paced connects saw, per time bucket: ok, stalled (it
//! succeeded, but only after more than a threshold: a retransmitted SYN),
//! failed (refused, unreachable, timed out). The records come from
//! `l4lb-probe stream`; times are CLOCK_MONOTONIC milliseconds, the same
//! clock in every process on the machine, so the test's own marks (link
//! down, event sent) line up with the probe's connection starts.
use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde_json::Value;

/// CLOCK_MONOTONIC in milliseconds (what [`Conn::start_ms`] is measured in).
pub fn mono_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Cannot fail for CLOCK_MONOTONIC with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// One connection of a stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Conn {
    /// When connect() was called (CLOCK_MONOTONIC ms).
    pub start_ms: f64,
    /// connect() + the backend's greeting, or until the error.
    pub dur_ms: f64,
    /// The backend that greeted (its testsrv id); None when it failed.
    pub backend: Option<String>,
    /// The error kind (`TimedOut`, `ConnectionRefused`, …) when it failed.
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Stalled,
    Failed,
}

impl Conn {
    pub fn outcome(&self, stall_ms: f64) -> Outcome {
        match (&self.backend, self.dur_ms > stall_ms) {
            (None, _) => Outcome::Failed,
            (Some(_), true) => Outcome::Stalled,
            (Some(_), false) => Outcome::Ok,
        }
    }
}

/// `l4lb-probe stream`'s JSON: `{"origin_ms", "conns": [{"t","ms","id"|"err"}]}`
/// with `t` relative to `origin_ms`.
pub fn parse_stream(v: &Value) -> Result<Vec<Conn>> {
    let origin = v["origin_ms"].as_f64().context("no origin_ms")?;
    v["conns"]
        .as_array()
        .context("no conns")?
        .iter()
        .map(|c| {
            Ok(Conn {
                start_ms: origin + c["t"].as_f64().context("conn without t")?,
                dur_ms: c["ms"].as_f64().context("conn without ms")?,
                backend: c["id"].as_str().map(str::to_owned),
                error: c["err"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// Counts of one bucket `[from_ms, from_ms + width)`, relative to the origin.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bucket {
    pub from_ms: f64,
    pub ok: u64,
    pub stalled: u64,
    pub failed: u64,
}

impl Bucket {
    pub fn total(&self) -> u64 {
        self.ok + self.stalled + self.failed
    }

    pub fn bad(&self) -> u64 {
        self.stalled + self.failed
    }
}

/// The whole curve of one or more streams, bucketed by connection start.
#[derive(Clone, Debug)]
pub struct Curve {
    /// The mark times are relative to (e.g. the moment a link went down).
    pub origin_ms: f64,
    pub bucket_ms: f64,
    pub stall_ms: f64,
    pub buckets: Vec<Bucket>,
    conns: Vec<Conn>,
}

impl Curve {
    /// Buckets of `bucket_ms` from the first connection's start, aligned on
    /// `origin_ms` (a bucket starts exactly at the origin).
    pub fn new(mut conns: Vec<Conn>, origin_ms: f64, bucket_ms: f64, stall_ms: f64) -> Curve {
        assert!(bucket_ms > 0.0, "bucket width must be positive");
        conns.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        let mut buckets: Vec<Bucket> = vec![];
        let index = |c: &Conn| ((c.start_ms - origin_ms) / bucket_ms).floor() as i64;
        let first = conns.first().map_or(0, index);
        for c in &conns {
            let k = (index(c) - first) as usize;
            while buckets.len() <= k {
                let from = (first + buckets.len() as i64) as f64 * bucket_ms;
                buckets.push(Bucket {
                    from_ms: from,
                    ..Bucket::default()
                });
            }
            let b = &mut buckets[k];
            match c.outcome(stall_ms) {
                Outcome::Ok => b.ok += 1,
                Outcome::Stalled => b.stalled += 1,
                Outcome::Failed => b.failed += 1,
            }
        }
        Curve {
            origin_ms,
            bucket_ms,
            stall_ms,
            buckets,
            conns,
        }
    }

    pub fn conns(&self) -> &[Conn] {
        &self.conns
    }

    /// Connections that started in `[from, to)` ms relative to the origin.
    pub fn between(&self, from: f64, to: f64) -> impl Iterator<Item = &Conn> {
        let (a, b) = (self.origin_ms + from, self.origin_ms + to);
        self.conns
            .iter()
            .filter(move |c| c.start_ms >= a && c.start_ms < b)
    }

    /// (ok, stalled, failed) of the connections started in `[from, to)`.
    pub fn tally(&self, from: f64, to: f64) -> (u64, u64, u64) {
        let mut t = (0, 0, 0);
        for c in self.between(from, to) {
            match c.outcome(self.stall_ms) {
                Outcome::Ok => t.0 += 1,
                Outcome::Stalled => t.1 += 1,
                Outcome::Failed => t.2 += 1,
            }
        }
        t
    }

    /// Start (relative to the origin) of the last connection that failed or
    /// stalled: after it, every new connection went well. None: none did.
    pub fn last_bad_ms(&self) -> Option<f64> {
        self.conns
            .iter()
            .rev()
            .find(|c| c.outcome(self.stall_ms) != Outcome::Ok)
            .map(|c| c.start_ms - self.origin_ms)
    }

    /// One line per bucket: `from_ms ok stalled failed` and a bar of the bad share.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:>9} {:>6} {:>8} {:>7}  (stalled: > {} ms; times from the mark)\n",
            "from_ms", "ok", "stalled", "failed", self.stall_ms
        );
        for b in &self.buckets {
            let bar = "#".repeat((b.bad() * 40).div_ceil(b.total().max(1)) as usize);
            let _ = writeln!(
                out,
                "{:>9.0} {:>6} {:>8} {:>7}  {bar}",
                b.from_ms, b.ok, b.stalled, b.failed
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(t: f64, ms: f64) -> Conn {
        Conn {
            start_ms: t,
            dur_ms: ms,
            backend: Some("n0".into()),
            error: None,
        }
    }

    fn failed(t: f64) -> Conn {
        Conn {
            start_ms: t,
            dur_ms: 1500.0,
            backend: None,
            error: Some("TimedOut".into()),
        }
    }

    #[test]
    fn buckets_align_on_the_origin_and_classify() {
        let conns = vec![
            ok(880.0, 1.0),
            ok(990.0, 1.0),
            failed(1000.0),
            ok(1050.0, 1200.0),
            ok(1260.0, 1.0),
        ];
        let c = Curve::new(conns, 1000.0, 100.0, 500.0);
        let got: Vec<(f64, u64, u64, u64)> = c
            .buckets
            .iter()
            .map(|b| (b.from_ms, b.ok, b.stalled, b.failed))
            .collect();
        assert_eq!(
            got,
            vec![
                (-200.0, 1, 0, 0),
                (-100.0, 1, 0, 0),
                (0.0, 0, 1, 1),
                (100.0, 0, 0, 0),
                (200.0, 1, 0, 0),
            ]
        );
        assert_eq!(c.last_bad_ms(), Some(50.0));
        assert_eq!(c.tally(0.0, 100.0), (0, 1, 1));
        assert_eq!(c.tally(-1000.0, 0.0), (2, 0, 0));
        assert!(c.render().lines().count() == 6, "{}", c.render());
    }

    #[test]
    fn no_bad_connection_means_no_last_bad() {
        let c = Curve::new(vec![ok(5.0, 2.0)], 0.0, 10.0, 100.0);
        assert_eq!(c.last_bad_ms(), None);
        assert!(Curve::new(vec![], 0.0, 10.0, 100.0).buckets.is_empty());
    }

    #[test]
    fn parses_the_probe_output() {
        let v = json!({"origin_ms": 100.0, "conns": [
            {"t": 0.5, "ms": 0.2, "id": "n1"},
            {"t": 10.0, "ms": 1500.0, "err": "TimedOut"},
        ]});
        let conns = parse_stream(&v).unwrap();
        assert_eq!(conns[0], ok(100.5, 0.2).with_backend("n1"));
        assert_eq!(conns[1].outcome(500.0), Outcome::Failed);
        assert_eq!(conns[1].error.as_deref(), Some("TimedOut"));
        assert!(parse_stream(&json!({"conns": []})).is_err());
    }

    impl Conn {
        fn with_backend(mut self, id: &str) -> Conn {
            self.backend = Some(id.into());
            self
        }
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = mono_ms();
        let b = mono_ms();
        assert!(b >= a && a > 0.0);
    }
}
