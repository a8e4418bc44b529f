//! The server goes away under the pool: restarts and killed backends.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connections_named, superuser, unique, wait_until, with_params};
use pool_core::Pool;
use pool_postgres::{is_connection_error, pool_from_url, NoTls, PostgresManager};
use pool_testkit::PgServer;

/// Borrows `n` connections at once and returns their backends' pids.
fn backend_pids(pool: &Pool<PostgresManager<NoTls>>, n: usize) -> Vec<i32> {
    let mut conns: Vec<_> = (0..n).map(|_| pool.get().unwrap()).collect();
    conns
        .iter_mut()
        .map(|c| c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0))
        .collect()
}

#[derive(Debug)]
enum Outcome {
    Ok,
    GetFailed(String),
    QueryFailed(String),
}

#[test]
fn server_restart_mid_load() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let mut pg = PgServer::start().expect("start postgres");
    // fail_fast=false: a borrower waits (up to pool_timeout) for the pool to
    // reconnect instead of failing at once while the server is down. A short
    // connect timeout: a connect started while the server was still coming
    // up must not hold the pool's creator thread for long.
    let pool = pool_from_url(&with_params(
        &pg.url(),
        "connection_limit=4&connect_timeout=0.5&pool_timeout=2&fail_fast=false",
    ))
    .expect("pool");

    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(Instant, Duration, Outcome)>>> = Arc::default();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (pool, stop, log) = (pool.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let start = Instant::now();
                    let outcome = match pool.get() {
                        Err(e) => Outcome::GetFailed(e.to_string()),
                        Ok(mut conn) => match conn.query_one("SELECT 1 + 1", &[]) {
                            Ok(row) => {
                                assert_eq!(row.get::<_, i32>(0), 2);
                                Outcome::Ok
                            }
                            Err(e) => {
                                if is_connection_error(&e) {
                                    conn.mark_broken();
                                }
                                Outcome::QueryFailed(e.to_string())
                            }
                        },
                    };
                    log.lock().unwrap().push((start, start.elapsed(), outcome));
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    let down = Instant::now();
    pg.restart().expect("restart");
    let back = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Release);
    for w in workers {
        w.join().expect("worker");
    }

    let log = log.lock().unwrap();
    let before: Vec<_> = log.iter().filter(|(s, t, _)| *s + *t < down).collect();
    let after: Vec<_> = log.iter().filter(|(s, _, _)| *s >= back).collect();
    let during = log.len() - before.len() - after.len();
    println!(
        "restart took {:?}; {} operations before, {during} during, {} after",
        back - down,
        before.len(),
        after.len()
    );
    for (_, _, outcome) in log
        .iter()
        .filter(|(_, _, o)| !matches!(o, Outcome::Ok))
        .take(5)
    {
        match outcome {
            Outcome::GetFailed(e) => println!("  during the restart, get failed: {e}"),
            Outcome::QueryFailed(e) => println!("  during the restart, a query failed: {e}"),
            Outcome::Ok => {}
        }
    }
    assert!(before.iter().all(|(_, _, o)| matches!(o, Outcome::Ok)));
    assert!(after.len() > 50, "too little load after the restart");
    for (start, took, outcome) in &after {
        assert!(
            matches!(outcome, Outcome::Ok),
            "{:?} after the server was back: {outcome:?}",
            *start - back
        );
        assert!(*took < Duration::from_secs(2), "a borrow took {took:?}");
    }
    assert!(pool.state().total <= 4);
}

#[test]
fn all_backends_killed() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let app = unique("killed");
    let pool = pool_from_url(&with_params(
        &pg.url(),
        &format!("application_name={app}&connection_limit=4&pool_timeout=5"),
    ))
    .expect("pool");
    let mut admin = superuser(pg);
    assert!(wait_until(Duration::from_secs(5), || pool.state().idle == 4));

    let old = backend_pids(&pool, 4);
    // Their session resets run off the borrowers' threads: let them finish,
    // so that every connection is idle when its backend is killed.
    assert!(wait_until(Duration::from_secs(5), || pool.state().idle == 4));
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 4);
    assert!(wait_until(Duration::from_secs(5), || connections_named(
        &mut admin, &app
    ) == 0));
    // Past the alive-bypass window, every borrow is validated first: the
    // dead connections are replaced and never handed out.
    std::thread::sleep(Duration::from_millis(600));
    let new = backend_pids(&pool, 4);
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "old {old:?}, new {new:?}"
    );
    assert_eq!(connections_named(&mut admin, &app), 4);
}

#[test]
fn a_connection_whose_backend_dies_while_lent_is_closed_on_return() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let app = unique("dies");
    let pool = pool_from_url(&with_params(
        &pg.url(),
        &format!("application_name={app}&connection_limit=1"),
    ))
    .expect("pool");
    let mut admin = superuser(pg);
    let mut conn = pool.get().unwrap();
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let err = conn.query_one("SELECT 1", &[]).unwrap_err();
    assert!(is_connection_error(&err), "{err}");
    assert!(conn.is_broken());
    drop(conn);
    // Closed, not returned: the next borrower gets a new backend.
    let mut conn = pool.get().unwrap();
    let new_pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_ne!(pid, new_pid);
}
