//! An r2d2 manager (r2d2_sqlite, bundled SQLite) running in this pool.

use pool_core::{r2d2::R2d2Manager, Pool};
use r2d2_sqlite::SqliteConnectionManager;
use std::time::Duration;

#[test]
fn r2d2_sqlite_runs_in_the_pool() {
    let dir = std::env::temp_dir().join(format!("pool-core-r2d2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("test.db");
    let manager = SqliteConnectionManager::file(&file);
    let pool = Pool::builder()
        .name("sqlite")
        .max_size(3)
        .alive_bypass_window(Duration::ZERO) // validate on every borrow: exercises is_valid
        .build(R2d2Manager::new(manager))
        .unwrap();
    pool.get()
        .unwrap()
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (n INTEGER);")
        .unwrap();
    std::thread::scope(|s| {
        for i in 0..6 {
            let pool = &pool;
            s.spawn(move || {
                let conn = pool.get().unwrap();
                conn.execute("INSERT INTO t (n) VALUES (?1)", [i]).unwrap();
            });
        }
    });
    let total: i64 = pool
        .get()
        .unwrap()
        .query_row("SELECT SUM(n) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 15);
    assert!(pool.state().total <= 3);
    pool.close();
    std::fs::remove_dir_all(&dir).unwrap();
}
