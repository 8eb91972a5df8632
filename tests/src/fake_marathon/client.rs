//! A deliberately small HTTP/1.1 client for tests: it shows exactly what
//! came over the wire (status, headers, a body shorter than its
//! Content-Length, a stream cut mid-frame, a reset), which a full client
//! library would hide behind one error. Sockets to a sandbox are opened from
//! inside its netns by a short-lived thread that setns(2)s first; the test
//! process itself never leaves its own netns.
use std::{
    collections::VecDeque,
    ffi::CString,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::ffi::OsStrExt,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::Value;

/// One HTTP response as received.
#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the body ended before its Content-Length or before the
    /// last chunk (the connection was closed or reset mid-body).
    pub complete: bool,
}

impl HttpReply {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("HTTP {} body is not JSON: {:?}", self.status, self.text()))
    }
}

/// `http://HOST:PORT/path?q` → (addr, "/path?q").
pub fn split_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?} is not an http:// URL"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let addr = hostport
        .parse()
        .with_context(|| format!("{url:?}: host must be IP:PORT"))?;
    Ok((addr, path))
}

/// A TCP connection made from inside the netns bound at `netns` (a
/// `/run/netns/NAME` path); the socket stays in that netns for its life.
pub fn connect_in_netns(
    netns: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let ns = CString::new(netns.as_os_str().as_bytes()).map_err(io::Error::other)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // setns(2) changes only this thread's netns; the thread ends here.
            let fd = unsafe { libc::open(ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
            let err = io::Error::last_os_error();
            unsafe { libc::close(fd) };
            if rc != 0 {
                return Err(err);
            }
            TcpStream::connect_timeout(&addr, timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("connect thread panicked")))
    })
}

fn request_bytes(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: l4lb-tests\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    let mut b = req.into_bytes();
    b.extend_from_slice(body);
    b
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

/// Parses a response head if `buf` holds all of it; returns it and its length.
fn parse_head(buf: &[u8]) -> io::Result<Option<(Head, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some((Head { status, headers }, end + 4)))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Incremental `Transfer-Encoding: chunked` decoder.
#[derive(Default)]
struct Chunked {
    raw: Vec<u8>,
    done: bool,
}

impl Chunked {
    /// Moves every complete chunk from `raw` to `out`.
    fn decode(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while !self.done {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(());
            };
            let line = String::from_utf8_lossy(&self.raw[..eol]);
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {line:?}"),
                    )
                })?;
            if size == 0 {
                // Ignore trailers; the terminating chunk is enough.
                self.done = true;
                return Ok(());
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return Ok(());
            }
            out.extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
        Ok(())
    }
}

/// Sends one request with `Connection: close` and reads until the server
/// closes (or `timeout` passes). A head that never completes is an error; a
/// body cut short is a reply with `complete == false`.
pub fn exchange<S: Read + Write>(
    mut s: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpReply> {
    s.write_all(&request_bytes(method, host, path, headers, body, true))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![];
    let mut chunk = [0u8; 16 * 1024];
    let mut cut = false;
    loop {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete response in time",
            ));
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no complete response in time",
                ));
            }
            // A reset after the head is a body cut short; before it, an error.
            Err(e) => match parse_head(&buf)? {
                Some(_) => {
                    cut = true;
                    break;
                }
                None => return Err(e),
            },
        }
    }
    let Some((head, at)) = parse_head(&buf)? else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed after {} bytes, before a response head",
                buf.len()
            ),
        ));
    };
    let rest = &buf[at..];
    let (body, complete) = if header(&head.headers, "transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut c = Chunked {
            raw: rest.to_vec(),
            done: false,
        };
        let mut out = vec![];
        c.decode(&mut out)?;
        (out, c.done)
    } else if let Some(cl) =
        header(&head.headers, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        (rest[..rest.len().min(cl)].to_vec(), rest.len() >= cl)
    } else {
        (rest.to_vec(), !cut)
    };
    Ok(HttpReply {
        status: head.status,
        headers: head.headers,
        body,
        complete,
    })
}

/// GET `url` from inside the netns at `netns`, 10 s timeout.
pub fn get_in_netns(netns: &Path, url: &str, headers: &[(&str, &str)]) -> Result<HttpReply> {
    let (addr, path) = split_url(url)?;
    let timeout = Duration::from_secs(10);
    let s =
        connect_in_netns(netns, addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    exchange(s, "GET", &addr.to_string(), &path, headers, b"", timeout)
        .with_context(|| format!("GET {url}"))
}

/// One Server-Sent Event.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event_type: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.data).with_context(|| format!("event data {:?}", self.data))
    }
}

/// How an event stream ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEnd {
    /// The server finished the body (last chunk).
    Clean,
    /// The connection closed or was reset without finishing the body.
    Aborted(String),
}

/// An open `GET /v2/events`, parsed per the SSE spec (LF or CRLF lines,
/// comment lines counted as keepalives).
pub struct SseClient {
    stream: TcpStream,
    head: HttpReply,
    chunked: Option<Chunked>,
    /// Body bytes still expected when the reply has a Content-Length.
    remaining: Option<usize>,
    decoded: Vec<u8>,
    ready: VecDeque<SseEvent>,
    event_type: String,
    data: Vec<String>,
    /// Comment lines (`:…`) seen so far.
    pub keepalives: usize,
    /// Raw decoded body bytes seen so far (for assertions on framing).
    pub raw: Vec<u8>,
    end: Option<StreamEnd>,
}

impl SseClient {
    /// Opens `url` from inside the netns with `Accept: text/event-stream`
    /// (unless `headers` sets Accept) and reads the response head. Any status
    /// is returned; only a 200 has events.
    pub fn open(netns: &Path, url: &str, headers: &[(&str, &str)]) -> Result<SseClient> {
        let (addr, path) = split_url(url)?;
        let timeout = Duration::from_secs(10);
        let mut s = connect_in_netns(netns, addr, timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_write_timeout(Some(timeout))?;
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        if !hs.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept")) {
            hs.push(("Accept", "text/event-stream"));
        }
        s.write_all(&request_bytes(
            "GET",
            &addr.to_string(),
            &path,
            &hs,
            b"",
            false,
        ))?;
        let deadline = Instant::now() + timeout;
        let mut buf = vec![];
        let mut chunk = [0u8; 4096];
        let (head, at) = loop {
            if let Some(h) = parse_head(&buf)? {
                break h;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "GET {url}: no response head in {timeout:?}"
            );
            s.set_read_timeout(Some(left))?;
            match s.read(&mut chunk) {
                Ok(0) => anyhow::bail!(
                    "GET {url}: closed before a response head ({} bytes)",
                    buf.len()
                ),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e).with_context(|| format!("GET {url}: reading the head")),
            }
        };
        let chunked = header(&head.headers, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
            .then(Chunked::default);
        // A non-stream reply (redirect, error) has a length.
        let remaining = match chunked {
            Some(_) => None,
            None => header(&head.headers, "content-length").and_then(|v| v.parse().ok()),
        };
        let mut c = SseClient {
            stream: s,
            head: HttpReply {
                status: head.status,
                headers: head.headers,
                body: vec![],
                complete: false,
            },
            chunked,
            remaining,
            decoded: vec![],
            ready: VecDeque::new(),
            event_type: String::new(),
            data: vec![],
            keepalives: 0,
            raw: vec![],
            end: None,
        };
        c.feed(&buf[at..])?;
        Ok(c)
    }

    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// Status and headers (the body is read as events).
    pub fn head(&self) -> &HttpReply {
        &self.head
    }

    /// Set once the stream has ended.
    pub fn end(&self) -> Option<&StreamEnd> {
        self.end.as_ref()
    }

    fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        let start = self.decoded.len();
        match &mut self.chunked {
            Some(c) => {
                c.raw.extend_from_slice(bytes);
                c.decode(&mut self.decoded)?;
                if c.done && self.end.is_none() {
                    self.end = Some(StreamEnd::Clean);
                }
            }
            None => match &mut self.remaining {
                Some(left) => {
                    let n = bytes.len().min(*left);
                    self.decoded.extend_from_slice(&bytes[..n]);
                    *left -= n;
                    if *left == 0 && self.end.is_none() {
                        self.end = Some(StreamEnd::Clean);
                    }
                }
                None => self.decoded.extend_from_slice(bytes),
            },
        }
        self.raw.extend_from_slice(&self.decoded[start..]);
        // Complete lines only; a partial line waits for more bytes.
        while let Some(nl) = self.decoded.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.decoded.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line[..nl]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let ty = std::mem::take(&mut self.event_type);
                    self.ready.push_back(SseEvent {
                        event_type: if ty.is_empty() { "message".into() } else { ty },
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                self.event_type.clear();
            } else if line.starts_with(':') {
                self.keepalives += 1;
            } else {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => self.event_type = value.to_string(),
                    "data" => self.data.push(value.to_string()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The next event; `Ok(None)` once the stream has ended, an error of kind
    /// `TimedOut` if nothing came within `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<SseEvent>> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            if self.end.is_some() {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no event in time"));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    let why = if self.chunked.is_some() {
                        "closed before the last chunk"
                    } else {
                        "closed"
                    };
                    self.end = Some(StreamEnd::Aborted(why.into()));
                }
                Ok(n) => self.feed(&chunk[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no event in time"));
                }
                Err(e) => self.end = Some(StreamEnd::Aborted(e.to_string())),
            }
        }
    }

    /// Skips events until one of `event_type` arrives; errors on timeout or
    /// on the end of the stream.
    pub fn wait_for(&mut self, event_type: &str, timeout: Duration) -> Result<SseEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Ok(Some(e)) if e.event_type == event_type => return Ok(e),
                Ok(Some(_)) => {}
                Ok(None) => {
                    anyhow::bail!("event stream ended ({:?}) before {event_type}", self.end)
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("waiting {timeout:?} for {event_type}"));
                }
            }
        }
    }

    /// Reads until the stream ends (or `timeout`); returns how it ended and
    /// the events that came before.
    pub fn wait_end(&mut self, timeout: Duration) -> Result<(StreamEnd, Vec<SseEvent>)> {
        let deadline = Instant::now() + timeout;
        let mut seen = vec![];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Ok(Some(e)) => seen.push(e),
                Ok(None) => return Ok((self.end.clone().expect("ended"), seen)),
                Err(e) => {
                    return Err(e).with_context(|| format!("stream still open after {timeout:?}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding() {
        let mut c = Chunked::default();
        let mut out = vec![];
        c.raw.extend_from_slice(b"5\r\nhel");
        c.decode(&mut out).unwrap();
        assert!(out.is_empty());
        c.raw
            .extend_from_slice(b"lo\r\n3;ext=1\r\nabc\r\n0\r\n\r\n");
        c.decode(&mut out).unwrap();
        assert_eq!(out, b"helloabc");
        assert!(c.done);
    }

    #[test]
    fn head_parsing() {
        let (h, n) =
            parse_head(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://x/\r\n\r\nrest")
                .unwrap()
                .unwrap();
        assert_eq!(h.status, 307);
        assert_eq!(header(&h.headers, "location"), Some("http://x/"));
        assert_eq!(n, 60 - 4);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn urls() {
        let (a, p) = split_url("http://127.0.0.1:8080/v2/apps?embed=apps.tasks").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:8080");
        assert_eq!(p, "/v2/apps?embed=apps.tasks");
        assert_eq!(split_url("http://[::1]:80").unwrap().1, "/");
    }
}
