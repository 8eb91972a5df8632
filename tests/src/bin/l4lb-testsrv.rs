//! Test backend: `--id NAME --tcp ADDR:PORT… --udp ADDR:PORT…`.
//! TCP: greets with `NAME\n`, then echoes each line until EOF (a held
//! connection stays observable). UDP: answers each datagram with
//! `NAME <payload>`. Prints `tcp ADDR` / `udp ADDR` per bound socket, then
//! `ready`, and nothing else on stdout. Ends on SIGTERM (default action).
//! `--accept-delay-ms N` makes it slow to accept (one accept per N ms);
//! `--reply-delay-ms N` slow to answer (each echo N ms after its line).
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::Arc,
    thread,
};

use anyhow::{Context, Result};
use clap::Parser;
use socket2::{Domain, Protocol, Socket, Type};

#[derive(Parser)]
struct Args {
    /// Name sent in greetings and replies.
    #[arg(long)]
    id: String,
    #[arg(long)]
    tcp: Vec<SocketAddr>,
    #[arg(long)]
    udp: Vec<SocketAddr>,
    /// Wait this long before each accept(): a slow-to-accept backend, whose
    /// connections complete the handshake and queue in the backlog.
    #[arg(long, default_value_t = 0)]
    accept_delay_ms: u64,
    /// Wait this long before echoing each line: a backend slow to answer
    /// requests (its handshakes and greeting stay fast).
    #[arg(long, default_value_t = 0)]
    reply_delay_ms: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.tcp.is_empty() || !args.udp.is_empty(),
        "give at least one --tcp or --udp"
    );
    let id: Arc<str> = args.id.into();
    let mut out = std::io::stdout().lock();
    for addr in &args.tcp {
        let l = bind(*addr, Type::STREAM, Protocol::TCP)?;
        l.listen(1024)?;
        let l: TcpListener = l.into();
        writeln!(out, "tcp {}", l.local_addr()?)?;
        let id = id.clone();
        let delay = std::time::Duration::from_millis(args.accept_delay_ms);
        let reply = std::time::Duration::from_millis(args.reply_delay_ms);
        thread::spawn(move || accept_loop(l, id, delay, reply));
    }
    for addr in &args.udp {
        let s: UdpSocket = bind(*addr, Type::DGRAM, Protocol::UDP)?.into();
        writeln!(out, "udp {}", s.local_addr()?)?;
        let id = id.clone();
        thread::spawn(move || udp_loop(s, &id));
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    loop {
        thread::park();
    }
}

/// IPv6 sockets are v6-only so `[::]:P` and `0.0.0.0:P` can coexist.
fn bind(addr: SocketAddr, ty: Type, proto: Protocol) -> Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    Ok(s)
}

fn accept_loop(
    l: TcpListener,
    id: Arc<str>,
    delay: std::time::Duration,
    reply: std::time::Duration,
) {
    loop {
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        match l.accept() {
            Ok((conn, _)) => {
                let id = id.clone();
                // A failed spawn just drops (closes) the connection.
                let _ = thread::Builder::new().spawn(move || {
                    let _ = serve_tcp(conn, &id, reply);
                });
            }
            Err(e) => {
                eprintln!("l4lb-testsrv: accept: {e}");
                thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn serve_tcp(conn: TcpStream, id: &str, reply: std::time::Duration) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut w = &conn;
    w.write_all(format!("{id}\n").as_bytes())?;
    let mut r = BufReader::new(&conn);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if !reply.is_zero() {
            thread::sleep(reply);
        }
        w.write_all(&line)?;
    }
}

fn udp_loop(s: UdpSocket, id: &str) {
    let mut buf = vec![0u8; 65536];
    let mut reply = Vec::with_capacity(65536 + id.len() + 1);
    loop {
        let (n, from) = match s.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("l4lb-testsrv: udp recv: {e}");
                continue;
            }
        };
        reply.clear();
        reply.extend_from_slice(id.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        if let Err(e) = s.send_to(&reply, from) {
            eprintln!("l4lb-testsrv: udp reply to {from}: {e}");
        }
    }
}
