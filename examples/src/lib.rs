//! A thread-per-request HTTP service that serves a small JSON API through the
//! pool, the way a blocking web server would use it.
//!
//! Every accepted connection gets its own thread; each request borrows a
//! database connection for as long as it needs it and returns it by dropping
//! it. Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /items/{n}` | a query on a pooled connection; `{"item": n, "value": …, "conn": id}` |
//! | `GET /transfer` | a short transaction (begin, two queries, commit) |
//! | `GET /metrics` | the pool's state in the Prometheus text format |
//! | `GET /health` | `200 ok` while the pool can lend, `503` when closed or exhausted |
//!
//! The database is the in-process simulated one (`pool-sim`), so the example
//! runs with nothing installed. HTTP handling is deliberately minimal (one
//! request per connection, GET only) and written with `std::net`.
//!
//! ```no_run
//! use pool_examples::Service;
//! let service = Service::start("127.0.0.1:0", 4).unwrap();
//! println!("listening on http://{}", service.addr());
//! service.join();
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pool_core::{Error, Pool};
use pool_sim::{SimDb, SimManager};

/// A running service: its listener thread, pool and database.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    pool: Pool<SimManager>,
    db: SimDb,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Service {
    /// Starts listening on `addr` with a pool of `pool_size` connections to a
    /// fresh simulated database.
    pub fn start(addr: &str, pool_size: u32) -> std::io::Result<Service> {
        let db = SimDb::new();
        let pool = Pool::builder()
            .name("http")
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(5))
            .build(db.manager())
            .map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn({
                let (pool, stop) = (pool.clone(), stop.clone());
                move || accept_loop(listener, pool, stop)
            })?;
        Ok(Service {
            addr,
            pool,
            db,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's pool.
    pub fn pool(&self) -> &Pool<SimManager> {
        &self.pool
    }

    /// The simulated database behind the pool.
    pub fn db(&self) -> &SimDb {
        &self.db
    }

    /// Serves until the process ends.
    pub fn join(mut self) {
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }

    /// Stops accepting, waits for the acceptor, and closes the pool.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        self.pool.close();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.shutdown();
        }
    }
}

fn accept_loop(listener: TcpListener, pool: Pool<SimManager>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let pool = pool.clone();
        // Thread per request: the model this pool is built for.
        let _ = std::thread::Builder::new()
            .name("http-request".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &pool) {
                    log::debug!("request failed: {e}");
                }
            });
    }
}

/// An HTTP response: status code, content type, body.
type Response = (u16, &'static str, String);

fn serve(stream: TcpStream, pool: &Pool<SimManager>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = if method != "GET" {
        (405, "text/plain", "only GET\n".to_string())
    } else {
        route(path, pool)
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Dispatches one request.
pub fn route(path: &str, pool: &Pool<SimManager>) -> Response {
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", metrics(pool)),
        "/health" => health(pool),
        "/transfer" => json_or_error(transfer(pool)),
        p => match p
            .strip_prefix("/items/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => json_or_error(item(pool, n)),
            None => (404, "text/plain", "not found\n".into()),
        },
    }
}

/// Why a request could not be served.
enum Failure {
    Pool(Error),
    Db(pool_sim::SimError),
}

fn json_or_error(result: Result<String, Failure>) -> Response {
    match result {
        Ok(body) => (200, "application/json", body),
        // The pool's error already says what happened (state, last cause).
        Err(Failure::Pool(e)) => (
            503,
            "application/json",
            format!("{{\"error\":{:?}}}\n", e.to_string()),
        ),
        Err(Failure::Db(e)) => (
            500,
            "application/json",
            format!("{{\"error\":{:?}}}\n", e.to_string()),
        ),
    }
}

fn item(pool: &Pool<SimManager>, n: u64) -> Result<String, Failure> {
    let mut conn = pool.get().map_err(Failure::Pool)?;
    match conn.query(&format!("SELECT value FROM items WHERE id = {n}")) {
        Ok(value) => Ok(format!(
            "{{\"item\":{n},\"value\":{value},\"conn\":{}}}\n",
            conn.id()
        )),
        Err(e) => {
            // A failed query may leave the connection unusable: don't lend it again.
            conn.mark_broken();
            Err(Failure::Db(e))
        }
    }
}

fn transfer(pool: &Pool<SimManager>) -> Result<String, Failure> {
    let mut conn = pool.get().map_err(Failure::Pool)?;
    let result = (|| {
        conn.begin()?;
        conn.query("UPDATE accounts SET balance = balance - 1 WHERE id = 1")?;
        conn.query("UPDATE accounts SET balance = balance + 1 WHERE id = 2")?;
        conn.commit()
    })();
    match result {
        Ok(()) => Ok("{\"transfer\":\"done\"}\n".into()),
        Err(e) => {
            conn.mark_broken();
            Err(Failure::Db(e))
        }
    }
}

/// The pool's state in the Prometheus text exposition format.
pub fn metrics(pool: &Pool<SimManager>) -> String {
    let s = pool.state();
    let name = pool.name();
    let mut out = String::new();
    for (metric, help, value) in [
        (
            "pool_connections_total",
            "Open connections, idle and lent.",
            s.total,
        ),
        (
            "pool_connections_idle",
            "Connections waiting in the pool.",
            s.idle,
        ),
        (
            "pool_connections_active",
            "Connections lent to borrowers.",
            s.active,
        ),
        (
            "pool_waiting_threads",
            "Borrowers waiting for a connection.",
            s.waiting,
        ),
        ("pool_max_size", "The pool's maximum size.", s.max_size),
        (
            "pool_min_idle",
            "The pool's minimum idle connections.",
            s.min_idle,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric}{{pool=\"{name}\"}} {value}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP pool_leaks_suspected Loans past the leak detection threshold.\n# TYPE pool_leaks_suspected gauge\npool_leaks_suspected{{pool=\"{name}\"}} {}\n",
        pool.leaks().len()
    ));
    out
}

fn health(pool: &Pool<SimManager>) -> Response {
    let s = pool.state();
    if pool.is_closed() {
        (503, "text/plain", "closed\n".into())
    } else if s.waiting > 0 && s.idle == 0 && s.total >= s.max_size {
        (503, "text/plain", format!("exhausted ({s})\n"))
    } else {
        (200, "text/plain", format!("ok ({s})\n"))
    }
}
