//! Session isolation between borrowers: with a pool of one connection,
//! borrower B always gets the connection borrower A just returned.

mod common;

use std::time::Duration;

use common::{superuser, superuser_in_test_db, unique, with_params};
use pool_core::Pool;
use pool_postgres::postgres::fallible_iterator::FallibleIterator;
use pool_postgres::{Isolation, PgConnection, PostgresManager};
use pool_testkit::{PgServer, PG_USER};

fn pool_of_one(url: &str, isolation: Isolation) -> Pool<PostgresManager<postgres::NoTls>> {
    let (manager, params) = PostgresManager::from_url(url).unwrap();
    params
        .apply(
            Pool::builder()
                .max_size(1)
                .connection_timeout(Duration::from_secs(5)),
        )
        .build(manager.isolation(isolation))
        .expect("pool")
}

fn pid(conn: &mut PgConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

fn text(conn: &mut PgConnection, sql: &str) -> Option<String> {
    conn.query_one(sql, &[]).unwrap().get(0)
}

/// A step of a leak test: runs on the pooled connection, with a superuser
/// connection at hand.
type Step = Box<dyn Fn(&mut PgConnection, &mut postgres::Client)>;

/// One leak: what borrower A does, and B's check that it left no trace.
struct Leak {
    name: &'static str,
    a: Step,
    b: Step,
}

#[test]
fn full_isolation_hides_every_leak_from_the_next_borrower() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let table = unique("iso_rows");
    let role = unique("iso_role");
    let seq = unique("iso_seq");
    let channel = unique("iso_chan");
    let mut admin = superuser_in_test_db(pg);
    admin
        .batch_execute(&format!("CREATE ROLE {role}; GRANT {role} TO {PG_USER};"))
        .unwrap();

    let pool = pool_of_one(&pg.url(), Isolation::Full);
    {
        let mut c = pool.get().unwrap();
        c.batch_execute(&format!(
            "CREATE TABLE {table} (x int); CREATE SEQUENCE {seq}; \
             CREATE TABLE {table}_serial (id serial PRIMARY KEY); \
             CREATE FUNCTION {table}_sets() RETURNS int LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM set_config('app.by_function', 'yes', false); RETURN 1; END $$"
        ))
        .unwrap();
    }
    let (t3, t4, t5, t6) = (table.clone(), table.clone(), table.clone(), table.clone());
    let t7 = table.clone();

    let t = table.clone();
    let t2 = table.clone();
    let r = role.clone();
    let s = seq.clone();
    let ch = channel.clone();
    let ch2 = channel.clone();
    let leaks: Vec<Leak> = vec![
        Leak {
            name: "open transaction with uncommitted writes",
            a: Box::new(move |c, _| {
                c.batch_execute(&format!("BEGIN; INSERT INTO {t} VALUES (1)"))
                    .unwrap()
            }),
            b: Box::new(move |c, admin| {
                let in_tx: Option<String> =
                    text(c, "SELECT pg_current_xact_id_if_assigned()::text");
                assert_eq!(in_tx, None, "still inside A's transaction");
                let n: i64 = admin
                    .query_one(&format!("SELECT count(*) FROM {t2}"), &[])
                    .unwrap()
                    .get(0);
                assert_eq!(n, 0, "A's insert was committed");
            }),
        },
        Leak {
            name: "failed transaction",
            a: Box::new(|c, _| {
                c.batch_execute("BEGIN").unwrap();
                assert!(c.batch_execute("SELECT 1/0").is_err());
            }),
            b: Box::new(|c, _| {
                assert_eq!(text(c, "SELECT 'ok'"), Some("ok".into()));
            }),
        },
        Leak {
            name: "SET of a setting",
            a: Box::new(|c, _| c.batch_execute("SET statement_timeout = '1234ms'").unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SHOW statement_timeout"), Some("0".into()))),
        },
        Leak {
            name: "custom session variable",
            a: Box::new(|c, _| c.batch_execute("SET app.tenant_id = '42'").unwrap()),
            b: Box::new(|c, _| {
                let v = text(c, "SELECT current_setting('app.tenant_id', true)");
                assert!(v.as_deref().unwrap_or("").is_empty(), "{v:?}");
            }),
        },
        Leak {
            name: "search_path",
            a: Box::new(|c, _| c.batch_execute("SET search_path = pg_catalog").unwrap()),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(c, "SHOW search_path"),
                    Some("\"$user\", public".into())
                )
            }),
        },
        Leak {
            name: "SET ROLE",
            a: Box::new(move |c, _| c.batch_execute(&format!("SET ROLE {r}")).unwrap()),
            b: Box::new(|c, _| {
                assert_eq!(text(c, "SELECT current_user::text"), Some(PG_USER.into()))
            }),
        },
        Leak {
            name: "temporary table",
            a: Box::new(|c, _| {
                c.batch_execute("CREATE TEMP TABLE scratch (x int)")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                assert_eq!(text(c, "SELECT to_regclass('pg_temp.scratch')::text"), None);
                c.batch_execute("CREATE TEMP TABLE scratch (x int)")
                    .unwrap();
            }),
        },
        Leak {
            name: "session advisory lock",
            a: Box::new(|c, _| c.batch_execute("SELECT pg_advisory_lock(424242)").unwrap()),
            b: Box::new(|c, admin| {
                let held: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_locks \
                         WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                assert_eq!(held, 0);
                let got: bool = admin
                    .query_one("SELECT pg_try_advisory_lock(424242)", &[])
                    .unwrap()
                    .get(0);
                assert!(got, "another session cannot take the lock");
                admin
                    .batch_execute("SELECT pg_advisory_unlock_all()")
                    .unwrap();
            }),
        },
        Leak {
            name: "LISTEN, with a notification already queued",
            a: Box::new(move |c, admin| {
                c.batch_execute(&format!("LISTEN {ch}")).unwrap();
                admin
                    .batch_execute(&format!("NOTIFY {ch}, 'for A'"))
                    .unwrap();
                // Wait until the notification sits in the client's queue.
                let got = c
                    .notifications()
                    .timeout_iter(Duration::from_secs(5))
                    .next()
                    .unwrap();
                assert!(got.is_some());
                admin
                    .batch_execute(&format!("NOTIFY {ch}, 'for A too'"))
                    .unwrap();
                c.batch_execute("SELECT pg_sleep(0.05)").unwrap();
                assert!(!c.notifications().is_empty(), "a notification is queued");
            }),
            b: Box::new(move |c, admin| {
                assert!(c.notifications().is_empty(), "A's notification reached B");
                let n: i64 = c
                    .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
                    .unwrap()
                    .get(0);
                assert_eq!(n, 0);
                admin
                    .batch_execute(&format!("NOTIFY {ch2}, 'for nobody'"))
                    .unwrap();
                c.batch_execute("SELECT pg_sleep(0.05)").unwrap();
                assert_eq!(c.notifications().iter().count().unwrap(), 0);
            }),
        },
        Leak {
            name: "SQL PREPARE",
            a: Box::new(|c, _| {
                c.batch_execute("PREPARE leaked AS SELECT 1; PREPARE \"We\"\"ird\" AS SELECT 2")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_prepared_statements WHERE from_sql",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                assert_eq!(n, 0);
                c.batch_execute("PREPARE leaked AS SELECT 1; DEALLOCATE leaked")
                    .unwrap();
            }),
        },
        Leak {
            name: "cursor WITH HOLD",
            a: Box::new(|c, _| {
                c.batch_execute("BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT 1; COMMIT")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                let n: i64 = c
                    // (The query's own protocol-level portal is listed too.)
                    .query_one("SELECT count(*) FROM pg_cursors WHERE name = 'held'", &[])
                    .unwrap()
                    .get(0);
                assert_eq!(n, 0);
            }),
        },
        // What the statements' text shows and the light resets.
        Leak {
            name: "open transaction begun by a statement of its own (light reset)",
            a: Box::new(move |c, _| {
                c.batch_execute("BEGIN").unwrap();
                c.execute(&format!("INSERT INTO {t3} VALUES ($1)"), &[&5_i32])
                    .unwrap();
            }),
            b: Box::new(move |c, _| {
                let n: i64 = c
                    .query_one(&format!("SELECT count(*) FROM {t4}"), &[])
                    .unwrap()
                    .get(0);
                assert_eq!(n, 0, "A's insert was committed or is still visible");
            }),
        },
        Leak {
            name: "currval moved by an INSERT's serial default (light reset)",
            a: Box::new(move |c, _| {
                c.execute(&format!("INSERT INTO {t5}_serial DEFAULT VALUES"), &[])
                    .unwrap();
            }),
            b: Box::new(|c, _| {
                let err = c.batch_execute("SELECT lastval()").unwrap_err();
                assert_eq!(
                    err.code(),
                    Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
                );
            }),
        },
        Leak {
            name: "currval moved by an UPDATE to a serial column's DEFAULT (light reset)",
            a: Box::new(move |c, _| {
                // The INSERT leak above left a row.
                let n = c
                    .execute(
                        &format!(
                            "UPDATE {t7}_serial SET id = DEFAULT \
                             WHERE id = (SELECT min(id) FROM {t7}_serial)"
                        ),
                        &[],
                    )
                    .unwrap();
                assert_eq!(n, 1);
            }),
            b: Box::new(|c, _| {
                let err = c.batch_execute("SELECT lastval()").unwrap_err();
                assert_eq!(
                    err.code(),
                    Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
                );
            }),
        },
        Leak {
            name: "set_config in a SELECT",
            a: Box::new(|c, _| {
                c.query_one("SELECT set_config('app.in_select', 'yes', false)", &[])
                    .unwrap();
            }),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(
                        c,
                        "SELECT coalesce(current_setting('app.in_select', true), '')"
                    ),
                    Some(String::new())
                )
            }),
        },
        Leak {
            name: "a setting changed by a function of the application's",
            a: Box::new(move |c, _| {
                c.query_one(&format!("SELECT {t6}_sets()"), &[]).unwrap();
            }),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(
                        c,
                        "SELECT coalesce(current_setting('app.by_function', true), '')"
                    ),
                    Some(String::new())
                )
            }),
        },
        Leak {
            name: "advisory lock taken by a statement prepared in the loan",
            a: Box::new(|c, _| {
                let st = c.prepare("SELECT pg_advisory_lock($1)").unwrap();
                c.query_one(&st, &[&515151_i64]).unwrap();
            }),
            b: Box::new(|c, _| {
                let held: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_locks \
                         WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                assert_eq!(held, 0);
            }),
        },
        Leak {
            name: "a SET as the second statement of a text",
            a: Box::new(|c, _| {
                c.batch_execute("SELECT 1; SET search_path TO pg_catalog")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                assert_ne!(
                    text(c, "SELECT current_setting('search_path')"),
                    Some("pg_catalog".into())
                )
            }),
        },
        Leak {
            name: "SELECT … INTO TEMP",
            a: Box::new(|c, _| {
                c.batch_execute("SELECT 1 AS x INTO TEMP into_temp")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(c, "SELECT to_regclass('pg_temp.into_temp')::text"),
                    None
                )
            }),
        },
        Leak {
            name: "a setting changed in a transaction of the inner client",
            a: Box::new(|c, _| {
                let client: &mut postgres::Client = c;
                let mut tx = client.transaction().unwrap();
                tx.batch_execute("SELECT set_config('app.inner', 'yes', false)")
                    .unwrap();
                tx.commit().unwrap();
            }),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(c, "SELECT coalesce(current_setting('app.inner', true), '')"),
                    Some(String::new())
                )
            }),
        },
        Leak {
            name: "sequence currval",
            a: Box::new(move |c, _| c.batch_execute(&format!("SELECT nextval('{s}')")).unwrap()),
            b: Box::new(|c, _| {
                let err = c.batch_execute("SELECT lastval()").unwrap_err();
                assert_eq!(
                    err.code(),
                    Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
                );
            }),
        },
    ];

    let first_pid = pid(&mut pool.get().unwrap());
    for leak in &leaks {
        {
            let mut a = pool.get().unwrap();
            (leak.a)(&mut a, &mut admin);
            assert!(a.was_used());
        }
        let mut b = pool.get().unwrap();
        assert!(!b.was_used(), "{}: the connection was not reset", leak.name);
        assert_eq!(
            pid(&mut b),
            first_pid,
            "{}: not the same connection",
            leak.name
        );
        (leak.b)(&mut b, &mut admin);
        println!("isolated: {}", leak.name);
    }
    assert_eq!(pool.state().total, 1);

    let mut c = pool.get().unwrap();
    c.batch_execute(&format!(
        "DROP TABLE {table}; DROP SEQUENCE {seq}; DROP TABLE {table}_serial; \
         DROP FUNCTION {table}_sets()"
    ))
    .unwrap();
    drop(c);
    drop(pool);
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}

#[test]
fn full_isolation_resets_session_authorization() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let pool = pool_of_one(&pg.superuser_url(), Isolation::Full);
    {
        let mut a = pool.get().unwrap();
        a.batch_execute(&format!("SET SESSION AUTHORIZATION {PG_USER}"))
            .unwrap();
        assert_eq!(
            text(&mut a, "SELECT session_user::text"),
            Some(PG_USER.into())
        );
    }
    let mut b = pool.get().unwrap();
    assert_eq!(
        text(&mut b, "SELECT session_user::text"),
        Some("postgres".into())
    );
    assert_eq!(
        text(&mut b, "SELECT current_user::text"),
        Some("postgres".into())
    );
}

#[test]
fn custom_types_keep_working_after_a_full_reset() {
    // DISCARD ALL would deallocate the driver's cached type-lookup
    // statements; the Full reset must not.
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let (mood, color) = (unique("mood"), unique("color"));
    let pool = pool_of_one(&pg.url(), Isolation::Full);
    pool.get()
        .unwrap()
        .batch_execute(&format!(
            "CREATE TYPE {mood} AS ENUM ('sad', 'happy'); \
             CREATE TYPE {color} AS ENUM ('red', 'green')"
        ))
        .unwrap();
    {
        let mut a = pool.get().unwrap();
        // The first custom type seen: the driver prepares and caches its
        // type-lookup statement.
        let rows = a.query(&format!("SELECT 'happy'::{mood}"), &[]).unwrap();
        assert_eq!(rows.len(), 1);
    }
    {
        let mut b = pool.get().unwrap();
        // A type the driver has not seen yet: looked up with the cached statement.
        let rows = b.query(&format!("SELECT 'green'::{color}"), &[]).unwrap();
        assert_eq!(rows.len(), 1);
    }
    // For contrast: a borrower running DISCARD ALL itself breaks that cache.
    let third = unique("size");
    let mut c = pool.get().unwrap();
    c.batch_execute(&format!("CREATE TYPE {third} AS ENUM ('s')"))
        .unwrap();
    c.batch_execute("DISCARD ALL").unwrap();
    let after_discard = c.query(&format!("SELECT 's'::{third}"), &[]);
    println!("after a manual DISCARD ALL, a new custom type gives: {after_discard:?}");
    c.mark_broken();
    drop(c);
    pool.get()
        .unwrap()
        .batch_execute(&format!(
            "DROP TYPE {mood}; DROP TYPE {color}; DROP TYPE {third}"
        ))
        .unwrap();
}

#[test]
fn rollback_isolation_ends_transactions_only() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let table = unique("rb_rows");
    let pool = pool_of_one(&pg.url(), Isolation::Rollback);
    pool.get()
        .unwrap()
        .batch_execute(&format!("CREATE TABLE {table} (x int)"))
        .unwrap();
    {
        let mut a = pool.get().unwrap();
        // (Separate calls: in one multi-statement query, BEGIN would take
        // the SET into the transaction.)
        a.batch_execute("SET app.kept = 'yes'").unwrap();
        a.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
            .unwrap();
    }
    {
        let mut b = pool.get().unwrap();
        assert_eq!(
            text(&mut b, "SELECT pg_current_xact_id_if_assigned()::text"),
            None
        );
        let n: i64 = b
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "A's insert was committed");
        // Session state is documented to carry over with Rollback.
        assert_eq!(
            text(&mut b, "SELECT current_setting('app.kept', true)"),
            Some("yes".into())
        );
        // A failed transaction is ended too.
        b.batch_execute("BEGIN").unwrap();
        assert!(b.batch_execute("SELECT 1/0").is_err());
    }
    let mut c = pool.get().unwrap();
    assert_eq!(text(&mut c, "SELECT 'usable'"), Some("usable".into()));
    c.batch_execute(&format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn no_isolation_leaves_the_session_alone() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let pool = pool_of_one(&pg.url(), Isolation::None);
    pool.get()
        .unwrap()
        .batch_execute("SET app.kept = 'yes'")
        .unwrap();
    let mut b = pool.get().unwrap();
    assert_eq!(
        text(&mut b, "SELECT current_setting('app.kept', true)"),
        Some("yes".into())
    );
}

#[test]
fn an_unused_borrow_sends_nothing() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let app = unique("unused");
    let url = with_params(
        &pg.url(),
        &format!("application_name={app}&test_on_check_out=false"),
    );
    let pool = pool_of_one(&url, Isolation::Full);
    let mut observer = superuser(pg);
    let mut last_activity = || -> (String, String) {
        let row = observer
            .query_one(
                "SELECT state_change::text, query FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    {
        let mut a = pool.get().unwrap();
        // Session state, so that the reset runs (a loan of plain statements
        // is not reset at all: tests/session_tracking.rs).
        a.batch_execute("SET TIME ZONE 'UTC'").unwrap();
    }
    // The reset runs off the borrower's thread: wait for the connection to
    // be back (idle) before looking.
    let back = std::time::Instant::now();
    while pool.state().idle != 1 && back.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let after_use = last_activity();
    assert!(
        after_use.1.contains("RESET ALL"),
        "no reset ran: {after_use:?}"
    );
    for _ in 0..3 {
        let conn = pool.get().unwrap();
        // Read-only access does not count as use.
        assert!(!conn.is_closed());
        assert!(!conn.was_used());
    }
    assert_eq!(
        last_activity(),
        after_use,
        "an unused borrow talked to the server"
    );
}

/// The server log lines of one backend (by the pid in `log_line_prefix`).
fn log_lines_of(pg: &PgServer, pid: i32) -> Vec<String> {
    let log = std::fs::read_to_string(pg.log_path()).unwrap_or_default();
    let tag = format!("[{pid}] ");
    log.lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_owned)
        .collect()
}

#[test]
fn resetting_a_clean_session_writes_nothing_to_the_server_log() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    for isolation in [Isolation::Full, Isolation::Rollback] {
        let pool = pool_of_one(&pg.url(), isolation);
        let backend = pid(&mut pool.get().unwrap());
        for _ in 0..20 {
            pool.get().unwrap().batch_execute("SELECT 1").unwrap();
        }
        // A session left in a transaction is still rolled back, and says so
        // once (the BEGIN that finds it open).
        pool.get()
            .unwrap()
            .batch_execute("BEGIN; SELECT 1")
            .unwrap();
        let mut last = pool.get().unwrap();
        assert_eq!(
            text(&mut last, "SELECT pg_current_xact_id_if_assigned()::text"),
            None,
            "{isolation:?}: the open transaction survived the reset"
        );
        assert_eq!(
            pid(&mut last),
            backend,
            "{isolation:?}: not the same session"
        );
        let lines = log_lines_of(pg, backend);
        let warnings: Vec<_> = lines.iter().filter(|l| l.contains("WARNING")).collect();
        assert!(
            warnings.len() <= 1
                && warnings
                    .iter()
                    .all(|l| l.contains("there is already a transaction in progress")),
            "{isolation:?}: 22 resets, one of a session left in a transaction, logged {warnings:#?}"
        );
    }
}
