//! Fail fast only when the database is really down (issue 15, item 3): not
//! while the server refuses logins beyond the role's connection limit but
//! serves the pool's connections, and not for ever once it is back.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{serial, with_params};
use pool_core::Error;
use pool_postgres::builder_from_url;
use pool_testkit::PgServer;

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

#[test]
fn a_role_connection_limit_below_max_size_never_fails_gets_fast() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let _serial = serial();
    let pg = PgServer::start().expect("start postgres");
    // The server serves two sessions of the pool's role and refuses a third
    // with 53300 "too many connections for role": the database is up.
    pg.set_connection_limit(Some(2)).unwrap();
    // fail_fast is on (the default).
    let (builder, manager) =
        builder_from_url(&with_params(&pg.url(), "connection_limit=4&pool_timeout=5")).unwrap();
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
                            conn.batch_execute("SELECT pg_sleep(0.002)").unwrap();
                            // One loan in 20 ends broken: the pool replaces it,
                            // and the replacement may meet the role's limit
                            // while the old backend is still exiting.
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
        "role limit 2, max_size 4, 8 threads: {ok} loans, {connect} fail-fast errors, \
         {timeout} timeouts, {other} other; slowest get {} ms; state {}\n  {first}",
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

#[test]
fn fail_fast_ends_once_the_server_is_back_even_when_nobody_waits() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let _serial = serial();
    let mut pg = PgServer::start().expect("start postgres");
    let (builder, manager) = builder_from_url(&with_params(
        &pg.url(),
        "connection_limit=4&min_idle=0&pool_timeout=1&connect_timeout=1",
    ))
    .unwrap();
    let pool = builder.build_unchecked(manager).expect("unchecked build");
    pg.stop().expect("stop");

    // The database is down: gets fail (at once, once the pool knows).
    let mut down = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let err = pool.get().map(|_| ()).expect_err("the server is down");
        down.push(format!("{:?}: {err}", t.elapsed()));
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("while down:\n  {}", down.join("\n  "));

    pg.start_again().expect("start again");
    let back = Instant::now();
    // A get every 20 ms; with fail-fast none of them waits, so only the
    // pool's own probe can find out the server is back.
    let mut last = String::new();
    let mut attempts = 0;
    let recovered = loop {
        attempts += 1;
        match pool.get() {
            Ok(mut conn) => {
                conn.batch_execute("SELECT 1")
                    .expect("query after recovery");
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
