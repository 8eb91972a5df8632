//! DNS over TCP, fair under many idle or slow clients (RFC 7766 §6.2).
//!
//! - A connection idle for `tcp_idle_timeout` is closed; once a message has
//!   begun it must arrive whole within `tcp_message_timeout`, and a reply
//!   must be taken within `tcp_write_timeout`. A message cut short (the
//!   stream ends or stalls before the length its prefix gave) is not
//!   answered: the connection is closed and `tcp_incomplete` counted.
//! - At most `max_tcp_connections` per listener and `max_tcp_per_client` per
//!   client address. When either is reached, a connection (of all, or of
//!   that client) is closed to make room, so a crowd cannot lock newcomers
//!   out: the one idle the longest, else the one that has been sending its
//!   message the longest (a slow or stalled sender). A newcomer is refused
//!   only when every connection is being answered (a forward in flight, a
//!   reply being written), which the upstream and write timeouts bound.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::{AbortHandle, JoinSet},
    time::{Instant, timeout, timeout_at},
};
use tracing::{debug, warn};

use super::{
    framing::{Framer, READ_CHUNK},
    server::{DnsCounters, Shared},
};

/// One open connection, as the table sees it.
struct Conn {
    client: IpAddr,
    activity: Arc<Activity>,
    abort: Option<AbortHandle>,
}

/// Updated by the connection's task, read when choosing whom to close.
/// Times are milliseconds since the table's epoch.
struct Activity {
    /// The last message or the accept.
    last_ms: AtomicU64,
    /// When the message being received began; [`NOT_READING`] otherwise.
    reading_since: AtomicU64,
    /// A message is being answered (forwarded, reply written).
    answering: AtomicBool,
}

const NOT_READING: u64 = u64::MAX;

impl Activity {
    fn new(now_ms: u64) -> Self {
        Activity {
            last_ms: AtomicU64::new(now_ms),
            reading_since: AtomicU64::new(NOT_READING),
            answering: AtomicBool::new(false),
        }
    }

    fn reading_since(&self) -> Option<u64> {
        Some(self.reading_since.load(Ordering::Relaxed)).filter(|&t| t != NOT_READING)
    }

    fn is_idle(&self) -> bool {
        !self.answering.load(Ordering::Relaxed) && self.reading_since().is_none()
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Conn>,
    per_client: HashMap<IpAddr, usize>,
}

/// The open connections of one listener.
struct ConnTable {
    max: usize,
    max_per_client: usize,
    epoch: Instant,
    inner: Mutex<Table>,
}

/// Why a newcomer could not be admitted.
struct Full;

impl ConnTable {
    fn new(max: usize, max_per_client: usize) -> Self {
        ConnTable {
            max: max.max(1),
            max_per_client: max_per_client.max(1),
            epoch: Instant::now(),
            inner: Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding it cannot leave the map half-updated in a
        // way that matters here: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for `client` (closing a connection if a cap is reached, see
    /// the module docs) and registers it; the bool: a connection was closed.
    fn admit(&self, client: IpAddr) -> Result<(u64, Arc<Activity>, bool), Full> {
        let mut t = self.lock();
        let own = t.per_client.get(&client).copied().unwrap_or(0);
        let victim = if own >= self.max_per_client {
            Some(Self::victim(&t, Some(client)).ok_or(Full)?)
        } else if t.conns.len() >= self.max {
            Some(Self::victim(&t, None).ok_or(Full)?)
        } else {
            None
        };
        if let Some(id) = victim {
            Self::remove(&mut t, id);
        }
        let activity = Arc::new(Activity::new(self.now_ms()));
        let id = t.next_id;
        t.next_id += 1;
        t.conns.insert(
            id,
            Conn {
                client,
                activity: activity.clone(),
                abort: None,
            },
        );
        *t.per_client.entry(client).or_default() += 1;
        Ok((id, activity, victim.is_some()))
    }

    fn set_abort(&self, id: u64, abort: AbortHandle) {
        match self.lock().conns.get_mut(&id) {
            Some(c) => c.abort = Some(abort),
            None => abort.abort(), // evicted before it was registered
        }
    }

    /// The connection to close for a newcomer: idle the longest, else
    /// sending its message the longest; never one being answered.
    fn victim(t: &Table, of: Option<IpAddr>) -> Option<u64> {
        let candidates = || {
            t.conns
                .iter()
                .filter(move |(_, c)| of.is_none_or(|ip| c.client == ip))
        };
        let idle = candidates()
            .filter(|(_, c)| c.activity.is_idle())
            .min_by_key(|(_, c)| c.activity.last_ms.load(Ordering::Relaxed))
            .map(|(&id, _)| id);
        idle.or_else(|| {
            candidates()
                .filter_map(|(&id, c)| Some((c.activity.reading_since()?, id)))
                .min()
                .map(|(_, id)| id)
        })
    }

    /// Forgets `id` and stops its task (no-op if already gone).
    fn remove(t: &mut Table, id: u64) {
        let Some(c) = t.conns.remove(&id) else {
            return;
        };
        if let Some(n) = t.per_client.get_mut(&c.client) {
            *n -= 1;
            if *n == 0 {
                t.per_client.remove(&c.client);
            }
        }
        if let Some(a) = c.abort {
            a.abort();
        }
    }
}

/// A connection's entry in the table: its task stamps activity through it,
/// and dropping it (the task ended or was aborted) removes the entry.
struct ConnHandle {
    table: Arc<ConnTable>,
    id: u64,
    activity: Arc<Activity>,
}

impl ConnHandle {
    fn touch(&self) {
        let now = self.table.now_ms();
        self.activity.last_ms.store(now, Ordering::Relaxed);
    }

    /// A message has begun arriving (the start kept if already so).
    fn reading(&self) {
        self.activity.answering.store(false, Ordering::Relaxed);
        let now = self.table.now_ms();
        let _ = self.activity.reading_since.compare_exchange(
            NOT_READING,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn answering(&self) {
        self.touch();
        self.activity.answering.store(true, Ordering::Relaxed);
        self.activity
            .reading_since
            .store(NOT_READING, Ordering::Relaxed);
    }

    fn idle(&self) {
        self.activity.answering.store(false, Ordering::Relaxed);
        self.activity
            .reading_since
            .store(NOT_READING, Ordering::Relaxed);
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(c) = t.conns.get_mut(&self.id) {
            c.abort = None; // this task is ending: nothing to abort
        }
        ConnTable::remove(&mut t, self.id);
    }
}

pub(super) async fn tcp_loop(listener: TcpListener, shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let table = Arc::new(ConnTable::new(
        cfg.max_tcp_connections,
        cfg.max_tcp_per_client,
    ));
    // Owned here: aborting this task aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                warn!(error = %e, "DNS TCP accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let client = peer.ip().to_canonical();
        let Ok((id, activity, evicted)) = table.admit(client) else {
            debug!(%peer, "DNS TCP: every connection is being answered, closing");
            DnsCounters::bump(&shared.counters.tcp_refused);
            continue;
        };
        if evicted {
            DnsCounters::bump(&shared.counters.tcp_evicted);
        }
        let handle = ConnHandle {
            table: table.clone(),
            id,
            activity,
        };
        let shared = shared.clone();
        let abort = conns.spawn(async move {
            if let Err(e) = tcp_conn(stream, client, &shared, &handle).await {
                debug!(%peer, error = %e, "DNS TCP connection");
            }
        });
        table.set_abort(id, abort);
    }
}

/// Reads messages until the client closes, idles out, or breaks a deadline.
async fn tcp_conn(
    mut stream: TcpStream,
    client: IpAddr,
    shared: &Shared,
    handle: &ConnHandle,
) -> std::io::Result<()> {
    let cfg = &shared.cfg;
    let opts = shared.opts(true, client);
    let mut framer = Framer::new();
    let mut chunk = [0u8; READ_CHUNK];
    // When the message now being read began (None: between messages).
    let mut started: Option<Instant> = None;
    loop {
        while let Some(msg) = framer.frame() {
            handle.answering();
            if let Some(messages) = shared.transfer(msg, client) {
                for m in &messages {
                    write_reply(&mut stream, m, cfg.tcp_write_timeout).await?;
                }
            } else if let Some(reply) = shared.reply(msg, &opts).await {
                write_reply(&mut stream, &reply, cfg.tcp_write_timeout).await?;
            }
            framer.consume();
            started = None;
        }
        let partial = framer.is_partial();
        if partial && started.is_none() {
            started = Some(Instant::now()); // the rest of a read began it
        }
        if partial {
            handle.reading();
        } else {
            handle.idle();
        }
        let deadline = match started {
            Some(t) => t + cfg.tcp_message_timeout,
            None => Instant::now() + cfg.tcp_idle_timeout,
        };
        let n = match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(Err(e)) if !partial => return Err(e),
            _ => {
                // End of stream, idle, or a message stalled or cut short.
                if partial {
                    DnsCounters::bump(&shared.counters.tcp_incomplete);
                }
                return Ok(());
            }
        };
        if started.is_none() {
            started = Some(Instant::now());
            handle.reading();
        }
        let taken = framer.push(&chunk[..n]);
        // Never short: every complete frame was answered above.
        debug_assert_eq!(taken, n);
    }
}

async fn write_reply(stream: &mut TcpStream, reply: &[u8], limit: Duration) -> std::io::Result<()> {
    let Ok(len) = u16::try_from(reply.len()) else {
        return Ok(());
    };
    let mut out = Vec::with_capacity(reply.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(reply);
    match timeout(limit, stream.write_all(&out)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
