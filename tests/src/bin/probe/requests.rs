//! `l4lb-probe requests`: concurrent request load through a VIP. Each of
//! `parallel` threads repeats {connect, greeting, one request line, its echo,
//! RST close}, so a backend slow to answer holds its connections longer —
//! what a least-loaded choice sees. Bounded by a request count and a time.
use std::{
    collections::BTreeMap,
    io::{self, BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use socket2::SockRef;

/// One thread's record: latencies (µs) and requests per backend id, errors.
#[derive(Default)]
struct Part {
    lat_us: Vec<f64>,
    by_id: BTreeMap<String, u64>,
    errors: u64,
}

pub fn requests(to: SocketAddr, n: u64, parallel: usize, run: Duration, t: Duration) -> Value {
    let left = AtomicU64::new(n);
    let until = Instant::now() + run;
    let parts: Vec<Part> = thread::scope(|s| {
        let handles: Vec<_> = (0..parallel)
            .map(|_| {
                let left = &left;
                s.spawn(move || {
                    let mut p = Part::default();
                    while Instant::now() < until && take(left) {
                        let t0 = Instant::now();
                        match one(to, t) {
                            Ok(id) => {
                                p.lat_us.push(t0.elapsed().as_secs_f64() * 1e6);
                                *p.by_id.entry(id).or_default() += 1;
                            }
                            Err(_) => p.errors += 1,
                        }
                    }
                    p
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut lat: Vec<f64> = parts
        .iter()
        .flat_map(|p| p.lat_us.iter().copied())
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut by_id: BTreeMap<String, u64> = BTreeMap::new();
    for p in &parts {
        for (id, c) in &p.by_id {
            *by_id.entry(id.clone()).or_default() += c;
        }
    }
    let pct = |q: f64| match lat.len() {
        0 => 0.0,
        len => lat[((q / 100.0 * len as f64).ceil() as usize).clamp(1, len) - 1],
    };
    json!({
        "requests": lat.len(),
        "errors": parts.iter().map(|p| p.errors).sum::<u64>(),
        "p50_us": pct(50.0),
        "p99_us": pct(99.0),
        "counts": by_id,
    })
}

/// Takes one request from the shared budget; false when it is spent.
fn take(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

/// One request; the backend's greeting id.
fn one(to: SocketAddr, t: Duration) -> io::Result<String> {
    let s = TcpStream::connect_timeout(&to, t)?;
    s.set_read_timeout(Some(t))?;
    s.set_nodelay(true)?;
    let mut r = BufReader::new(&s);
    let mut id = String::new();
    r.read_line(&mut id)?;
    (&s).write_all(b"ping\n")?;
    let mut echo = String::new();
    r.read_line(&mut echo)?;
    // RST on close: a long run leaves no TIME_WAIT behind.
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    if echo != "ping\n" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no echo"));
    }
    Ok(id.trim_end().to_string())
}
