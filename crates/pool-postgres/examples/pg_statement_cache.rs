//! Measures a prepared-statement query per borrow with and without
//! `PgConnection::prepare_cached`, against a throwaway local PostgreSQL
//! server (pool of one, default `Isolation::Full`, so every loan is reset).
//!
//! ```text
//! cargo run --release -p pool-postgres --example pg_statement_cache [iterations]
//! ```
//!
//! Without the cache, `query` with SQL text prepares the statement (one
//! round trip), runs it (another) and closes it; with the cache, a loan runs
//! the statement prepared by an earlier loan: one round trip.

use std::time::{Duration, Instant};

use pool_core::Pool;
use pool_postgres::PostgresManager;
use pool_testkit::PgServer;

const SQL: &str = "SELECT oid::int8, relname::text FROM pg_catalog.pg_class WHERE oid = $1::oid";

/// Time per call of `f`: the best of three rounds of `n` calls (after a
/// warm-up), to keep other processes' noise out.
fn per_op(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        f();
    }
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    if let Err(e) = PgServer::binaries_available() {
        eprintln!("skipped: {e}");
        return;
    }
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3000);
    let pg = PgServer::start().expect("start postgres");
    let (manager, _) = PostgresManager::from_url(&pg.url()).unwrap();
    let pool = Pool::builder().max_size(1).build(manager).unwrap();
    let oid = 1259_u32; // pg_class itself
    let uncached = per_op(n, || {
        let mut conn = pool.get().unwrap();
        let row = conn.query_one(SQL, &[&oid]).unwrap();
        assert_eq!(row.get::<_, i64>(0), 1259);
    });
    let cached = per_op(n, || {
        let mut conn = pool.get().unwrap();
        let statement = conn.prepare_cached(SQL).unwrap();
        let row = conn.query_one(&statement, &[&oid]).unwrap();
        assert_eq!(row.get::<_, i64>(0), 1259);
    });
    for (name, t) in [
        ("borrow + query with SQL text (prepares)", uncached),
        ("borrow + prepare_cached + query", cached),
    ] {
        println!("{name:<44} {:>8.1} µs", t.as_secs_f64() * 1e6);
    }
}
