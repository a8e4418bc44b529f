//! Measures what each isolation policy costs per borrow, next to a raw held
//! connection, against a throwaway local MariaDB server.
//!
//! ```text
//! cargo run --release -p pool-mysql --example mysql_isolation_cost [iterations]
//! ```

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use pool_core::Pool;
use pool_mysql::{Isolation, MysqlManager};
use pool_testkit::MariaDbServer;

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
    if let Err(e) = MariaDbServer::binaries_available() {
        eprintln!("skipped: {e}");
        return;
    }
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let db = MariaDbServer::start().expect("start mariadb");
    let url = db.url();

    let (manager, _) = MysqlManager::from_url(&url).unwrap();
    let mut raw = mysql::Conn::new(manager.opts().clone()).unwrap();
    let raw_query = per_op(n, || raw.query_drop("SELECT 1").unwrap());
    println!(
        "{:<48} {:>8.1} µs",
        "raw held connection: SELECT 1",
        raw_query.as_secs_f64() * 1e6
    );
    let raw_reset = per_op(n, || raw.reset().unwrap());
    println!(
        "{:<48} {:>8.1} µs",
        "raw held connection: COM_RESET_CONNECTION",
        raw_reset.as_secs_f64() * 1e6
    );
    drop(raw);

    for (isolation, timeout) in [
        (Isolation::None, None),
        (Isolation::Rollback, None),
        (Isolation::Rollback, Some(Duration::from_secs(5))),
        (Isolation::Full, None),
        (Isolation::Full, Some(Duration::from_secs(5))),
    ] {
        let (manager, _) = MysqlManager::from_url(&url).unwrap();
        let pool = Pool::builder()
            .max_size(1)
            .build(manager.isolation(isolation).reset_timeout(timeout))
            .unwrap();
        let used = per_op(n, || pool.get().unwrap().query_drop("SELECT 1").unwrap());
        let unused = per_op(n, || drop(pool.get().unwrap()));
        let how = if timeout.is_some() {
            "5 s limit"
        } else {
            "no limit"
        };
        println!(
            "{:<48} {:>8.1} µs   (borrow without a statement: {:.1} µs)",
            format!("pool, {isolation:?} reset ({how}): get + SELECT 1"),
            used.as_secs_f64() * 1e6,
            unused.as_secs_f64() * 1e6,
        );
    }
}
