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
//! | `GET /metrics` | the pool's metrics in the Prometheus text format |
//! | `GET /health` | the pool's health verdict: `200` unless critical or closed (`503`) |
//!
//! The database is PostgreSQL or MySQL/MariaDB when a URL is given
//! (`postgres://…`, `mysql://…`), and otherwise the in-process simulated one
//! (`pool-sim`), so the example runs with nothing installed. HTTP handling is
//! deliberately minimal (one request per connection, GET only) and written
//! with `std::net`.
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

use mysql::prelude::Queryable;
use pool_core::{Error, HealthStatus, Metrics, Pool};
use pool_mysql::MysqlManager;
use pool_postgres::{NoTls, PostgresManager};
use pool_sim::{SimDb, SimManager};

/// The database behind the service, through its pool.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The simulated database (no URL given).
    Sim(Pool<SimManager>, SimDb),
    /// PostgreSQL, through pool-postgres.
    Postgres(Pool<PostgresManager<NoTls>>),
    /// MySQL or MariaDB, through pool-mysql.
    Mysql(Pool<MysqlManager>),
}

impl Backend {
    /// Opens a pool of `size` to `url` (`postgres://…` or `mysql://…`; pool
    /// settings may travel in the URL), or to a fresh simulated database
    /// when `url` is `None`.
    pub fn open(url: Option<&str>, size: u32) -> Result<Backend, Error> {
        let settings = |b: pool_core::Builder| {
            b.name("http")
                .max_size(size)
                .connection_timeout(Duration::from_secs(5))
        };
        match url {
            None => {
                let db = SimDb::new();
                let pool = settings(Pool::builder()).build(db.manager())?;
                Ok(Backend::Sim(pool, db))
            }
            Some(u) if u.starts_with("mysql://") => {
                let (builder, manager) = pool_mysql::builder_from_url(u)?;
                Ok(Backend::Mysql(settings(builder).build(manager)?))
            }
            Some(u) => {
                let (builder, manager) = pool_postgres::builder_from_url(u)?;
                Ok(Backend::Postgres(settings(builder).build(manager)?))
            }
        }
    }

    /// The pool's metrics.
    pub fn metrics(&self) -> Metrics {
        match self {
            Backend::Sim(p, _) => p.metrics(),
            Backend::Postgres(p) => p.metrics(),
            Backend::Mysql(p) => p.metrics(),
        }
    }

    /// The pool's health verdict.
    pub fn health(&self) -> pool_core::Health {
        match self {
            Backend::Sim(p, _) => p.health(),
            Backend::Postgres(p) => p.health(),
            Backend::Mysql(p) => p.health(),
        }
    }

    /// Closes the pool.
    pub fn close(&self) {
        match self {
            Backend::Sim(p, _) => p.close(),
            Backend::Postgres(p) => p.close(),
            Backend::Mysql(p) => p.close(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Backend::Sim(p, _) => p.is_closed(),
            Backend::Postgres(p) => p.is_closed(),
            Backend::Mysql(p) => p.is_closed(),
        }
    }

    /// `GET /items/{n}`: one query on a pooled connection.
    fn item(&self, n: u64) -> Result<String, Failure> {
        let (value, conn) = match self {
            Backend::Sim(pool, _) => {
                let mut conn = pool.get().map_err(Failure::Pool)?;
                let value = conn
                    .query(&format!("SELECT value FROM items WHERE id = {n}"))
                    .inspect_err(|_| conn.mark_broken())
                    .map_err(|e| Failure::Db(e.to_string()))?;
                (value as i64, conn.id())
            }
            Backend::Postgres(pool) => {
                let mut conn = pool.get().map_err(Failure::Pool)?;
                let id = conn.id();
                let row = conn.query_one("SELECT $1::int8 * 7", &[&(n as i64)]);
                match row {
                    Ok(row) => (row.get(0), id),
                    Err(e) => {
                        if pool_postgres::is_connection_error(&e) {
                            conn.mark_broken();
                        }
                        // The driver's message is its kind; the cause is its source.
                        return Err(Failure::Db(pool_core::ErrorChain(&e).to_string()));
                    }
                }
            }
            Backend::Mysql(pool) => {
                let mut conn = pool.get().map_err(Failure::Pool)?;
                let id = conn.id();
                match conn.exec_first::<i64, _, _>("SELECT ? * 7", (n,)) {
                    Ok(v) => (v.unwrap_or_default(), id),
                    Err(e) => {
                        if pool_mysql::is_connection_error(&e) {
                            conn.mark_broken();
                        }
                        return Err(Failure::Db(e.to_string()));
                    }
                }
            }
        };
        Ok(format!(
            "{{\"item\":{n},\"value\":{value},\"conn\":{conn}}}\n"
        ))
    }

    /// `GET /transfer`: a short transaction.
    fn transfer(&self) -> Result<String, Failure> {
        let result = match self {
            Backend::Sim(pool, _) => {
                let mut conn = pool.get().map_err(Failure::Pool)?;
                let r = (|| {
                    conn.begin()?;
                    conn.query("UPDATE accounts SET balance = balance - 1 WHERE id = 1")?;
                    conn.query("UPDATE accounts SET balance = balance + 1 WHERE id = 2")?;
                    conn.commit()
                })();
                r.inspect_err(|_| conn.mark_broken())
                    .map_err(|e| e.to_string())
            }
            Backend::Postgres(pool) => {
                let mut conn = pool.get().map_err(Failure::Pool)?;
                let r = (|| {
                    let mut tx = conn.transaction()?;
                    tx.batch_execute("SELECT 1; SELECT 2")?;
                    tx.commit()
                })();
                if let Err(e) = &r {
                    if pool_postgres::is_connection_error(e) {
                        conn.mark_broken();
                    }
                }
                r.map_err(|e| pool_core::ErrorChain(&e).to_string())
            }
            Backend::Mysql(pool) => {
                let mut conn = pool.get().map_err(Failure::Pool)?;
                let r = conn.query_drop("START TRANSACTION; SELECT 1; COMMIT");
                if let Err(e) = &r {
                    if pool_mysql::is_connection_error(e) {
                        conn.mark_broken();
                    }
                }
                r.map_err(|e| e.to_string())
            }
        };
        result
            .map(|()| "{\"transfer\":\"done\"}\n".to_string())
            .map_err(Failure::Db)
    }
}

/// A running service: its listener thread, pool and database.
#[derive(Debug)]
pub struct Service {
    addr: SocketAddr,
    backend: Backend,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Service {
    /// Starts listening on `addr` with a pool of `pool_size` connections to a
    /// fresh simulated database.
    pub fn start(addr: &str, pool_size: u32) -> std::io::Result<Service> {
        Service::start_with(addr, pool_size, None)
    }

    /// Starts listening on `addr` with a pool of `pool_size` connections to
    /// `url` (see [`Backend::open`]).
    pub fn start_with(addr: &str, pool_size: u32, url: Option<&str>) -> std::io::Result<Service> {
        let backend = Backend::open(url, pool_size).map_err(std::io::Error::other)?;
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn({
                let (backend, stop) = (backend.clone(), stop.clone());
                move || accept_loop(listener, backend, stop)
            })?;
        Ok(Service {
            addr,
            backend,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database behind the service.
    pub fn backend(&self) -> &Backend {
        &self.backend
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
        self.backend.close();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.shutdown();
        }
    }
}

fn accept_loop(listener: TcpListener, backend: Backend, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let backend = backend.clone();
        // Thread per request: the model this pool is built for.
        let _ = std::thread::Builder::new()
            .name("http-request".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &backend) {
                    log::debug!("request failed: {e}");
                }
            });
    }
}

/// An HTTP response: status code, content type, body.
type Response = (u16, &'static str, String);

fn serve(stream: TcpStream, backend: &Backend) -> std::io::Result<()> {
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
        route(path, backend)
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
pub fn route(path: &str, backend: &Backend) -> Response {
    match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            backend.metrics().to_prometheus(),
        ),
        "/health" => health(backend),
        "/transfer" => json_or_error(backend.transfer()),
        p => match p
            .strip_prefix("/items/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) => json_or_error(backend.item(n)),
            None => (404, "text/plain", "not found\n".into()),
        },
    }
}

/// Why a request could not be served.
enum Failure {
    Pool(Error),
    Db(String),
}

fn json_or_error(result: Result<String, Failure>) -> Response {
    match result {
        Ok(body) => (200, "application/json", body),
        // The pool's error says what happened (state, what to do); its
        // cause (the last connect error) is its source: send the chain.
        Err(Failure::Pool(e)) => (
            503,
            "application/json",
            format!(
                "{{\"error\":{:?}}}\n",
                pool_core::ErrorChain(&e).to_string()
            ),
        ),
        Err(Failure::Db(e)) => (500, "application/json", format!("{{\"error\":{e:?}}}\n")),
    }
}

/// The pool's health verdict as an HTTP response.
fn health(backend: &Backend) -> Response {
    if backend.is_closed() {
        return (503, "text/plain", "closed\n".into());
    }
    let h = backend.health();
    let status = if h.status == HealthStatus::Critical {
        503
    } else {
        200
    };
    (status, "text/plain", format!("{h}\n"))
}
