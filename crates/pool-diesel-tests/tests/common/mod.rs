//! What the diesel suites share: a fresh database per test on each backend,
//! and the server's count of sessions on it (to see that the pool closed
//! what it says it closed).

#![allow(dead_code)] // each test file uses its backend's part

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pool_testkit::{MARIADB_PASSWORD, MARIADB_USER, PG_PASSWORD, PG_USER};

pub mod suite;

/// A database of one test's own.
pub struct Db {
    /// diesel's URL for it.
    pub url: String,
    /// A URL that cannot connect (wrong password, or a missing directory).
    pub bad_url: String,
    /// Sessions the server has open on this database (None for SQLite).
    sessions: Option<Box<dyn Fn() -> u32>>,
    /// Ends the server session with this id (None for SQLite).
    kill: Option<Box<dyn Fn(i64)>>,
    /// Keeps an SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// Waits (up to 10 s) until the server has exactly `n` sessions on this
    /// database; does nothing on SQLite.
    pub fn expect_sessions(&self, n: u32) {
        let Some(sessions) = &self.sessions else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = sessions();
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server has {now} sessions on this database, the pool accounts for {n}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ends server session `id` from outside; false on SQLite.
    pub fn kill_session(&self, id: i64) -> bool {
        match &self.kill {
            Some(kill) => {
                kill(id);
                true
            }
            None => false,
        }
    }
}

/// A name unique within this process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh SQLite database file.
pub fn sqlite() -> Option<Db> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = dir.path().join("test.db").to_string_lossy().into_owned();
    Some(Db {
        url,
        bad_url: "/nonexistent-directory/for-this-test/test.db".into(),
        sessions: None,
        kill: None,
        _dir: Some(dir),
    })
}

/// A fresh database on the shared PostgreSQL server, owned by the test
/// user; None (the test is skipped) without PostgreSQL's binaries.
pub fn postgres() -> Option<Db> {
    if !pool_testkit::should_run(pool_testkit::PgServer::binaries_available()) {
        return None;
    }
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let name = unique("diesel");
    pg.run_sql(&format!("CREATE DATABASE {name} OWNER {PG_USER}"))
        .expect("create database");
    let port = pg.port();
    let count_sql = format!(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = '{name}' AND backend_type = 'client backend'"
    );
    Some(Db {
        url: format!("postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}/{name}"),
        bad_url: format!("postgres://{PG_USER}:wrong@127.0.0.1:{port}/{name}"),
        sessions: Some(Box::new(move || {
            let out = pg.run_sql(&count_sql).expect("count sessions");
            out.trim().parse().expect("a count")
        })),
        kill: Some(Box::new(move |id| {
            pg.run_sql(&format!("SELECT pg_terminate_backend({id})"))
                .expect("terminate backend");
        })),
        _dir: None,
    })
}

/// A fresh database on the shared MariaDB server, granted to the test
/// user; None (the test is skipped) without MariaDB's binaries.
pub fn mariadb() -> Option<Db> {
    if !pool_testkit::should_run(pool_testkit::MariaDbServer::binaries_available()) {
        return None;
    }
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let name = unique("diesel");
    db.run_sql(&format!(
        "CREATE DATABASE {name}; \
         GRANT ALL PRIVILEGES ON {name}.* TO '{MARIADB_USER}'@'%'; \
         GRANT ALL PRIVILEGES ON {name}.* TO '{MARIADB_USER}'@'127.0.0.1'; \
         GRANT ALL PRIVILEGES ON {name}.* TO '{MARIADB_USER}'@'localhost'"
    ))
    .expect("create database");
    let port = db.port();
    let count_sql =
        format!("SELECT count(*) FROM information_schema.processlist WHERE db = '{name}'");
    Some(Db {
        url: format!("mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:{port}/{name}"),
        bad_url: format!("mysql://{MARIADB_USER}:wrong@127.0.0.1:{port}/{name}"),
        sessions: Some(Box::new(move || {
            let out = db.run_sql(&count_sql).expect("count sessions");
            out.trim().parse().expect("a count")
        })),
        kill: Some(Box::new(move |id| {
            db.run_sql(&format!("KILL {id}")).expect("kill session");
        })),
        _dir: None,
    })
}
