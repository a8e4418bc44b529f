//! The server goes away under the pool: restarts and killed connections.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connections_of, own_user, root, unique, wait_until, with_params};
use mysql::prelude::Queryable;
use pool_core::Pool;
use pool_mysql::{pool_from_url, MysqlManager};
use pool_testkit::MariaDbServer;

/// Borrows `n` connections at once and returns their connection ids.
fn connection_ids(pool: &Pool<MysqlManager>, n: usize) -> Vec<u32> {
    let mut conns: Vec<_> = (0..n).map(|_| pool.get().unwrap()).collect();
    conns
        .iter_mut()
        .map(|c| c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap())
        .collect()
}

#[derive(Debug)]
enum Outcome {
    /// Succeeded; the borrow itself took this long.
    Ok(Duration),
    GetFailed(String),
    QueryFailed(String),
}

#[test]
fn server_restart_mid_load() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let mut db = MariaDbServer::start().expect("start mariadb");
    // fail_fast=false: a borrower waits (up to pool_timeout) for the pool to
    // reconnect instead of failing at once while the server is down. A short
    // connect timeout: a connect started while the server was still coming
    // up must not hold the pool's creator thread for long.
    let pool = pool_from_url(&with_params(
        &db.url(),
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
                    let got = pool.get();
                    let borrowed = start.elapsed();
                    let outcome = match got {
                        Err(e) => Outcome::GetFailed(e.to_string()),
                        // Errors are recorded by the connection itself: a
                        // connection error closes it when it comes back.
                        Ok(mut conn) => match conn.query_first::<i64, _>("SELECT 1 + 1") {
                            Ok(n) => {
                                assert_eq!(n, Some(2));
                                Outcome::Ok(borrowed)
                            }
                            Err(e) => Outcome::QueryFailed(e.to_string()),
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
    db.restart().expect("restart");
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
        .filter(|(_, _, o)| !matches!(o, Outcome::Ok(_)))
        .take(5)
    {
        match outcome {
            Outcome::GetFailed(e) => println!("  during the restart, get failed: {e}"),
            Outcome::QueryFailed(e) => println!("  during the restart, a query failed: {e}"),
            Outcome::Ok(_) => {}
        }
    }
    assert!(before.iter().all(|(_, _, o)| matches!(o, Outcome::Ok(_))));
    assert!(after.len() > 50, "too little load after the restart");
    for (start, took, outcome) in &after {
        assert!(
            matches!(outcome, Outcome::Ok(_)),
            "{:?} after the server was back: {outcome:?}",
            *start - back
        );
        if let Outcome::Ok(borrowed) = outcome {
            assert!(
                *borrowed < Duration::from_secs(2),
                "{:?} after the server was back, a borrow took {borrowed:?} ({took:?} with its query)",
                *start - back
            );
        }
    }
    assert!(pool.state().total <= 4);
}

#[test]
fn all_connections_killed() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let mut admin = root(db);
    let user = unique("killed");
    let url = own_user(db, &mut admin, &user);
    let pool =
        pool_from_url(&with_params(&url, "connection_limit=4&pool_timeout=5")).expect("pool");
    assert!(wait_until(Duration::from_secs(5), || pool.state().idle == 4));
    let old = connection_ids(&pool, 4);
    // Their session resets run off the borrowers' threads: let them finish,
    // so that every connection is idle when it is killed.
    assert!(wait_until(Duration::from_secs(5), || pool.state().idle == 4));
    for id in &old {
        admin.query_drop(format!("KILL {id}")).unwrap();
    }
    assert!(wait_until(Duration::from_secs(5), || connections_of(
        &mut admin, &user
    ) == 0));
    // Past the alive-bypass window every borrow is validated first: the dead
    // connections are replaced and never handed out.
    std::thread::sleep(Duration::from_millis(600));
    let new = connection_ids(&pool, 4);
    assert!(
        new.iter().all(|id| !old.contains(id)),
        "old {old:?}, new {new:?}"
    );
    drop(pool);
    admin.query_drop(format!("DROP USER '{user}'@'%'")).unwrap();
}

#[test]
fn a_connection_killed_while_lent_is_closed_on_return() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let mut admin = root(db);
    let pool = pool_from_url(&with_params(&db.url(), "connection_limit=1")).expect("pool");
    let mut conn = pool.get().unwrap();
    let id: u32 = conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    admin.query_drop(format!("KILL {id}")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // The error is recorded by the connection: no ping needed to know.
    let err = conn.query_drop("SELECT 1").unwrap_err();
    assert!(pool_mysql::is_connection_error(&err), "{err}");
    assert!(conn.is_broken());
    drop(conn);
    let mut conn = pool.get().unwrap();
    let new_id: u32 = conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap();
    assert_ne!(id, new_id);
}
