//! `l4lb-probe stream`: paced connects for a failure curve. Connection i
//! starts at i × interval on its own thread, so a connect stuck in SYN
//! retries never delays the next one (the schedule is what clients do, not
//! what the slowest backend allows). Each reads the backend's greeting and
//! closes with RST, so a long run leaves no TIME_WAIT behind.
use std::{
    io::{self, BufRead, BufReader},
    net::{SocketAddr, TcpStream},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use l4lb_tests::cluster::mono_ms;
use serde_json::{Value, json};
use socket2::SockRef;

/// Most connections in flight at once (threads): interval × this must
/// cover the timeout.
pub const MAX_IN_FLIGHT: u64 = 2000;

pub fn stream(to: SocketAddr, n: usize, interval: Duration, timeout: Duration) -> Result<Value> {
    let in_flight = timeout.as_micros() / interval.as_micros().max(1) + 1;
    if in_flight > u128::from(MAX_IN_FLIGHT) {
        bail!("timeout / interval = {in_flight} connections in flight; at most {MAX_IN_FLIGHT}");
    }
    let conns = Mutex::new(Vec::with_capacity(n));
    let origin = mono_ms();
    let start = Instant::now();
    thread::scope(|s| -> Result<()> {
        for i in 0..n {
            let due = start + interval * i as u32;
            thread::sleep(due.saturating_duration_since(Instant::now()));
            let conns = &conns;
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, move || {
                    let t = mono_ms() - origin;
                    let r = greeting(to, timeout);
                    let ms = mono_ms() - origin - t;
                    let rec = match r {
                        Ok(id) => json!({"t": t, "ms": ms, "id": id}),
                        Err(e) => json!({"t": t, "ms": ms, "err": super::kind_name(&e)}),
                    };
                    conns.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
                })?;
        }
        Ok(())
    })?;
    let mut conns = conns.into_inner().unwrap_or_else(|e| e.into_inner());
    let t = |c: &Value| c["t"].as_f64().unwrap_or(0.0);
    conns.sort_by(|a, b| t(a).total_cmp(&t(b)));
    Ok(json!({"to": to.to_string(), "origin_ms": origin, "conns": conns}))
}

/// connect (bounded) + the id line (bounded), then an RST close.
fn greeting(to: SocketAddr, t: Duration) -> io::Result<String> {
    let s = TcpStream::connect_timeout(&to, t)?;
    s.set_read_timeout(Some(t))?;
    let mut line = String::new();
    let r = BufReader::new(&s).read_line(&mut line);
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    r?;
    match line.strip_suffix('\n') {
        Some(id) => Ok(id.to_string()),
        None => Err(super::eof("no id line")),
    }
}
