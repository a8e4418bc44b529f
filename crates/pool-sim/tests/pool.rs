//! The simulated database behind a real `pool_core::Pool`.

use std::time::Duration;

use pool_core::Pool;
use pool_sim::SimDb;

fn db() -> SimDb {
    SimDb::builder()
        .connect_latency(Duration::from_micros(200))
        .build()
}

#[test]
fn pool_lends_resets_and_closes_everything() {
    let db = db();
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .build(db.manager())
        .unwrap();
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut conn = pool.get().unwrap();
                    assert!(conn.is_session_clean(), "a borrower saw another's session");
                    conn.set_var("owner", &i.to_string()).unwrap();
                    conn.query("SELECT 1").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = db.stats();
    assert!(stats.peak_open <= 3, "{stats}");
    assert_eq!(stats.violations(), 0, "{stats}");
    pool.close();
    drop(pool);
    assert!(
        db.wait_until(Duration::from_secs(5), |s| s.open == 0),
        "{}",
        db.stats()
    );
    db.verify_all_closed().unwrap();
}

#[test]
fn pool_replaces_broken_connections() {
    let db = db();
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_secs(5))
        .build(db.manager())
        .unwrap();
    let first = pool_sim::SimConn::id(&pool.get().unwrap());
    db.break_all();
    let mut conn = pool.get().unwrap();
    assert_ne!(pool_sim::SimConn::id(&conn), first);
    conn.query("SELECT 1").unwrap();
    drop(conn);
    pool.close();
    drop(pool);
    assert!(db.wait_until(Duration::from_secs(5), |s| s.open == 0));
    db.verify_all_closed().unwrap();
}

#[test]
fn refused_connects_surface_as_pool_errors() {
    let db = db();
    db.set_refuse_connections(true);
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(50))
        .build_unchecked(db.manager())
        .unwrap();
    assert!(pool.get().is_err());
    db.set_refuse_connections(false);
    drop(pool);
}
