//! `mmpool exporter NAME... --listen ADDR`: serves the figures of shared
//! pools on `/metrics` over HTTP for Prometheus, a sidecar for processes
//! that have no Python (C++ decoders, say).
//!
//! Plain `std::net`: one thread per connection, at most `MAX_CONNECTIONS` at
//! once (more are answered 503 and closed), each with read and write time
//! limits, one request per connection (`Connection: close`). Every scrape
//! reads the pools afresh.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mmpool::pool::shared::{SharedPool, SharedSnapshot};

use crate::args::{unknown, Args};
use crate::exposition::{render, PoolFigures};

const USAGE: &str = "\
usage: mmpool exporter NAME... --listen ADDR

Serves the shared pools NAME... (/dev/shm/mmpool.NAME) on http://ADDR/metrics
in Prometheus' text exposition format: the families of `mmpool status NAME
--prometheus`, one sample per pool (label `pool`) and per attached process
(label `pid`). A pool that cannot be read has mmpool_pool_up 0 and no other
samples; it is read again at each scrape. ADDR is HOST:PORT, 127.0.0.1:9464 say
(port 0 picks a free one); the address bound is printed on the first line.
Runs until killed.";

/// Connections served at once; more are refused with 503.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request or read the answer.
const IO_LIMIT: Duration = Duration::from_secs(10);
/// The longest request head read (request line and headers).
const MAX_HEAD: u64 = 16 * 1024;

/// The exposition of the pools `names`, each read now.
pub fn scrape(names: &[String]) -> String {
    let snapshots: Vec<Option<SharedSnapshot>> = names.iter().map(|n| SharedPool::inspect(n).ok()).collect();
    let figures: Vec<PoolFigures<'_>> =
        names.iter().zip(&snapshots).map(|(name, s)| PoolFigures { name, snapshot: s.as_ref() }).collect();
    render(&figures)
}

/// `mmpool exporter NAME... --listen ADDR`.
pub fn main(args: &[String]) -> i32 {
    let (mut names, mut listen) = (Vec::new(), None);
    let mut args = Args::new(args);
    while let Some(flag) = args.next_flag() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            "--listen" => match args.value("--listen") {
                Ok(v) => listen = Some(v),
                Err(e) => return usage_error(&e),
            },
            word if !word.starts_with('-') => names.push(word.to_string()),
            word => return usage_error(&unknown(word)),
        }
    }
    if names.is_empty() {
        return usage_error("name at least one shared pool");
    }
    let Some(listen) = listen else {
        return usage_error("--listen HOST:PORT is required");
    };
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(_) => return usage_error(&format!("--listen needs HOST:PORT with a numeric host, got `{listen}`")),
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mmpool exporter: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    let bound = listener.local_addr().map_or(addr, |a| a);
    println!("mmpool exporter: serving {} on http://{bound}/metrics", names.join(", "));
    let _ = std::io::stdout().flush();
    serve(listener, Arc::new(names));
    0
}

fn usage_error(message: &str) -> i32 {
    eprintln!("mmpool exporter: {message}\n{USAGE}");
    2
}

fn serve(listener: TcpListener, names: Arc<Vec<String>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(IO_LIMIT));
        let _ = stream.set_write_timeout(Some(IO_LIMIT));
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = respond(&mut stream, "503 Service Unavailable", "text/plain", "too many connections\n", true);
            continue;
        }
        let (names, done) = (Arc::clone(&names), Arc::clone(&active));
        let spawned = std::thread::Builder::new().name("mmpool-exporter".into()).spawn(move || {
            let _ = handle(stream, &names);
            done.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            // The closure (and so the stream) is dropped; its slot is free again.
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Reads one request head and answers it.
fn handle(mut stream: TcpStream, names: &[String]) -> std::io::Result<()> {
    let mut head = BufReader::new(Read::by_ref(&mut stream).take(MAX_HEAD));
    let mut request_line = String::new();
    head.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if head.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    drop(head);
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", scrape(names)),
        ("GET" | "HEAD", "/") => ("200 OK", "text/plain; charset=utf-8", "mmpool exporter: see /metrics\n".into()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found; try /metrics\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET and HEAD\n".into()),
    };
    respond(&mut stream, status, content_type, &body, method != "HEAD")
}

/// Writes a whole answer (the body only when `send_body`; its length is in
/// the head either way).
fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str, send_body: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if send_body {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}
