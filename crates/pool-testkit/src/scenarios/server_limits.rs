//! Fail fast only when the database is really down (issue 15, item 3): not
//! while the server refuses logins beyond the user's connection limit but
//! serves the pool's connections, and not for ever once it is back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pool_core::Error;

use super::{serial, with_params, Driver, Server};

/// Outcomes of `get()`, by kind.
#[derive(Default)]
struct Tally {
    ok: AtomicU32,
    connect: AtomicU32,
    timeout: AtomicU32,
    other: AtomicU32,
    first_errors: Mutex<Vec<String>>,
    slowest_ms: AtomicU32,
}

impl Tally {
    fn record(&self, took: Duration, result: &Result<(), Error>) {
        self.slowest_ms
            .fetch_max(took.as_millis() as u32, Ordering::Relaxed);
        let counter = match result {
            Ok(()) => &self.ok,
            Err(Error::Connect { .. }) => &self.connect,
            Err(Error::Timeout { .. }) => &self.timeout,
            Err(_) => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            let mut first = self.first_errors.lock().unwrap();
            if first.len() < 3 {
                first.push(format!("after {took:?}: {e}"));
            }
        }
    }
}

/// The server serves two sessions of the pool's user and refuses a third
/// (PostgreSQL: 53300 "too many connections for role"; MariaDB: 1226
/// "exceeded the 'max_user_connections' resource"): the database is up.
/// Eight threads borrow from a pool of four (fail-fast on, the default) for
/// 4 s, one loan in 20 ending broken; no `get()` may fail (fast or by
/// timeout), and more than 200 loans must be served.
pub fn a_user_connection_limit_below_max_size_never_fails_gets_fast<D: Driver>() {
    crate::require_or_skip!(D::Server::binaries_available());
    let _serial = serial();
    let server = D::Server::start().expect("start server");
    server.set_connection_limit(Some(2)).unwrap();
    // fail_fast is on (the default).
    let (builder, manager) = D::builder_from_url(&with_params(
        &server.url(),
        "connection_limit=4&pool_timeout=5",
    ))
    .unwrap();
    let pool = builder.build(manager).expect("pool");

    let tally = Arc::new(Tally::default());
    let loans = Arc::new(AtomicU32::new(0));
    let start = Instant::now();
    let borrowers: Vec<_> = (0..8)
        .map(|_| {
            let (pool, tally, loans) = (pool.clone(), tally.clone(), loans.clone());
            std::thread::spawn(move || {
                while start.elapsed() < Duration::from_secs(4) {
                    let t = Instant::now();
                    let got = pool.get();
                    let took = t.elapsed();
                    match got {
                        Ok(mut conn) => {
                            tally.record(took, &Ok(()));
                            D::execute(&mut conn, D::Server::SLEEP_2MS).unwrap();
                            // One loan in 20 ends broken: the pool replaces it,
                            // and the replacement may meet the user's limit
                            // while the old session is still ending.
                            if loans.fetch_add(1, Ordering::Relaxed) % 20 == 19 {
                                conn.mark_broken();
                            }
                        }
                        Err(e) => {
                            tally.record(took, &Err(e));
                            // Failing fast must not turn into a busy loop
                            // that starves the server on 2 cores.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            })
        })
        .collect();
    for b in borrowers {
        b.join().expect("borrower");
    }
    let ok = tally.ok.load(Ordering::Relaxed);
    let connect = tally.connect.load(Ordering::Relaxed);
    let timeout = tally.timeout.load(Ordering::Relaxed);
    let other = tally.other.load(Ordering::Relaxed);
    let first = tally.first_errors.lock().unwrap().join("\n  ");
    println!(
        "{} limit 2, max_size 4, 8 threads: {ok} loans, {connect} fail-fast errors, \
         {timeout} timeouts, {other} other; slowest get {} ms; state {}\n  {first}",
        D::Server::ACCOUNT,
        tally.slowest_ms.load(Ordering::Relaxed),
        pool.state()
    );
    assert!(ok > 200, "only {ok} loans in 4 s");
    assert_eq!(
        connect,
        0,
        "{connect} of {} gets failed fast while the database served every loan:\n  {first}",
        ok + connect + timeout + other
    );
    assert_eq!(timeout + other, 0, "gets failed:\n  {first}");
}

/// The server stops under an idle pool (`min_idle=0`, connect limit 1 s) and
/// gets fail; it starts again, and a `get()` every 20 ms (none of which waits,
/// with fail-fast) must succeed, and run a query, within 5 s: only the pool's
/// own probe can find out the server is back.
pub fn fail_fast_ends_once_the_server_is_back_even_when_nobody_waits<D: Driver>() {
    crate::require_or_skip!(D::Server::binaries_available());
    let _serial = serial();
    let mut server = D::Server::start().expect("start server");
    let (builder, manager) = D::builder_from_url(&with_params(
        &server.url(),
        "connection_limit=4&min_idle=0&pool_timeout=1&connect_timeout=1",
    ))
    .unwrap();
    let pool = builder.build_unchecked(manager).expect("unchecked build");
    server.stop().expect("stop");

    // The database is down: gets fail (at once, once the pool knows).
    let mut down = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let err = pool.get().map(|_| ()).expect_err("the server is down");
        down.push(format!("{:?}: {err}", t.elapsed()));
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("while down:\n  {}", down.join("\n  "));

    server.start_again().expect("start again");
    let back = Instant::now();
    // A get every 20 ms; with fail-fast none of them waits, so only the
    // pool's own probe can find out the server is back.
    let mut last = String::new();
    let mut attempts = 0;
    let recovered = loop {
        attempts += 1;
        match pool.get() {
            Ok(mut conn) => {
                D::execute(&mut conn, "SELECT 1").expect("query after recovery");
                break Some(back.elapsed());
            }
            Err(e) => last = e.to_string(),
        }
        if back.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    match recovered {
        Some(after) => println!("a get succeeded {after:?} after the server was back"),
        None => panic!(
            "5 s after the server was back (ready, accepting logins), {attempts} gets \
             every 20 ms still fail; the last: {last} (state {})",
            pool.state()
        ),
    }
}
