//! The agent's log as the control-plane benchmarks read it: tailing the file,
//! tracing's `key=value` fields and timestamps, and waiting for the lines
//! that mark an apply or a Marathon read.
use std::{
    fs,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use l4lb_tests::Agent;

use crate::interrupt;

/// The agent's log, read incrementally (complete lines only).
pub(crate) struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    pub(crate) fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_path_buf(),
            offset: 0,
            partial: String::new(),
        }
    }

    pub(crate) fn lines(&mut self) -> Result<Vec<String>> {
        let mut f = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut out = vec![];
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            out.push(strip_ansi(line.trim_end()));
        }
        Ok(out)
    }
}

/// The log without terminal colour codes (`ESC [ … letter`).
pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            it.next();
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=value` of a tracing line (`key="quoted value"` too).
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    if let Some(q) = rest.strip_prefix('"') {
        return q.split('"').next();
    }
    rest.split_whitespace().next()
}

pub(crate) fn num(line: &str, key: &str) -> Option<u64> {
    field(line, key)?.parse().ok()
}

/// Unix seconds of the line's leading RFC 3339 UTC timestamp
/// (`2026-11-26T10:00:00.123456Z`, tracing-subscriber's default).
pub(crate) fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss: f64 = t.next()?.parse().ok()?;
    // days_from_civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn is_apply(l: &str) -> bool {
    l.contains("table applied")
}

pub(crate) fn is_read(l: &str) -> bool {
    l.contains("marathon: apps read")
}

/// Lines that mean the run is not measuring what it claims.
pub(crate) fn check_line(l: &str) -> Result<()> {
    for bad in [
        "not applied:",
        "adopted the table",
        "keeping the previous table",
        "read failed",
        " ERROR ",
    ] {
        if l.contains(bad) {
            bail!("agent log: {l}");
        }
    }
    Ok(())
}

/// Reads the log until `pred` matches a line (returned with every line seen
/// on the way), failing on a line [`check_line`] rejects or after `timeout`.
pub(crate) fn wait_line(
    tail: &mut LogTail,
    agent: &mut Agent,
    timeout: Duration,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        for l in tail.lines()? {
            check_line(&l)?;
            let hit = pred(&l);
            seen.push(l.clone());
            if hit {
                return Ok(l);
            }
        }
        if !agent.is_running() {
            bail!("agent exited; log:\n{}", agent.log());
        }
        if Instant::now() >= deadline {
            bail!(
                "no matching agent log line within {timeout:?}; last lines:\n{}",
                seen[seen.len().saturating_sub(20)..].join("\n")
            );
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until no apply or read line has appeared for `quiet` (at most `max`).
pub(crate) fn wait_quiet(
    tail: &mut LogTail,
    quiet: Duration,
    max: Duration,
) -> Result<Vec<String>> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut seen = vec![];
    while last.elapsed() < quiet && start.elapsed() < max {
        for l in tail.lines()? {
            check_line(&l)?;
            if is_apply(&l) || is_read(&l) {
                last = Instant::now();
            }
            seen.push(l);
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(seen)
}

/// Waits for the apply of a full re-read with this trigger (`resync`), then
/// for `quiet` without reads or applies. Returns the failed reads seen
/// meanwhile (the source retries them).
pub(crate) fn wait_reread_apply(
    tail: &mut LogTail,
    agent: &mut Agent,
    trigger: &str,
    timeout: Duration,
    quiet: Duration,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let mut failed = 0;
    'outer: loop {
        for l in tail.lines()? {
            if l.contains("read failed") {
                println!("  (agent: {})", &l[l.find("marathon:").unwrap_or(0)..]);
                failed += 1;
                continue;
            }
            check_line(&l)?;
            if is_apply(&l) && field(&l, "trigger").is_some_and(|t| t.contains(trigger)) {
                break 'outer;
            }
        }
        if !agent.is_running() {
            bail!("agent exited; log:\n{}", agent.log());
        }
        if Instant::now() >= deadline {
            bail!("no apply of a {trigger} re-read within {timeout:?} ({failed} failed reads)");
        }
        interrupt::check()?;
        thread::sleep(Duration::from_millis(5));
    }
    wait_quiet(tail, quiet, Duration::from_secs(30))?;
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_and_time() {
        let l = "\u{1b}[2m2026-11-26T10:00:01.500000Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m l4lb_agent::run: table applied \u{1b}[3mtrigger\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"marathon initial\" \u{1b}[3madded\u{1b}[0m\u{1b}[2m=\u{1b}[0m10000 took_us=12345 event_to_maps_us=None";
        let s = strip_ansi(l);
        assert!(is_apply(&s));
        assert_eq!(field(&s, "trigger"), Some("marathon initial"));
        assert_eq!(num(&s, "added"), Some(10000));
        assert_eq!(num(&s, "took_us"), Some(12345));
        assert_eq!(num(&s, "event_to_maps_us"), None);
        let t = log_time(&s).unwrap();
        // 2026-11-26 = 20783 days after 1970-01-01.
        assert!((t - (20783.0 * 86400.0 + 36001.5)).abs() < 1e-6, "{t}");
    }
}
