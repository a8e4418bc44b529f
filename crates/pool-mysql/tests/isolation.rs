//! Session isolation between borrowers: with a pool of one connection,
//! borrower B always gets the connection borrower A just returned.

mod common;

use std::time::{Duration, Instant};

use common::{own_user, root, unique, with_params};
use mysql::prelude::Queryable;
use mysql::Conn;
use pool_core::Pool;
use pool_mysql::{Isolation, MysqlConnection, MysqlManager};
use pool_testkit::{MariaDbServer, MARIADB_DATABASE};

fn pool_of_one(url: &str, isolation: Isolation) -> Pool<MysqlManager> {
    let (manager, params) = MysqlManager::from_url(url).unwrap();
    params
        .apply(
            Pool::builder()
                .max_size(1)
                .connection_timeout(Duration::from_secs(5)),
        )
        .build(manager.isolation(isolation))
        .expect("pool")
}

fn id(c: &mut MysqlConnection) -> u32 {
    c.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
}

fn text(c: &mut MysqlConnection, sql: &str) -> Option<String> {
    c.query_first::<Option<String>, _>(sql).unwrap().flatten()
}

/// A step of a leak test: runs on the pooled connection, with an admin
/// connection at hand.
type Step = Box<dyn Fn(&mut MysqlConnection, &mut Conn)>;

/// One leak: what borrower A does, and B's check that it left no trace.
struct Leak {
    name: &'static str,
    a: Step,
    b: Step,
}

#[test]
fn full_isolation_hides_every_leak_from_the_next_borrower() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let mut admin = root(db);
    let user = unique("iso_user");
    let url = own_user(db, &mut admin, &user);
    let (table, other_db, role) = (unique("iso_rows"), unique("iso_db"), unique("iso_role"));
    let (serial, set_mode) = (unique("iso_serial"), unique("iso_set_mode"));
    admin
        .query_drop(format!(
            "CREATE TABLE {MARIADB_DATABASE}.{table} (x INT) ENGINE=InnoDB; \
             CREATE TABLE {MARIADB_DATABASE}.{serial} (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB; \
             CREATE FUNCTION {MARIADB_DATABASE}.{set_mode}() RETURNS INT NOT DETERMINISTIC \
             BEGIN SET SESSION sql_mode = 'ANSI_QUOTES'; RETURN 1; END; \
             CREATE DATABASE {other_db}; GRANT ALL ON {other_db}.* TO '{user}'@'%'; \
             CREATE ROLE {role}; GRANT {role} TO '{user}'@'%'"
        ))
        .unwrap();
    let pool = pool_of_one(&url, Isolation::Full);

    let charset_before = {
        let mut c = pool.get().unwrap();
        text(
            &mut c,
            "SELECT CONCAT_WS(',', @@character_set_client, @@character_set_connection, \
             @@character_set_results, @@collation_connection)",
        )
    };

    let (t1, t2, t3, t4) = (table.clone(), table.clone(), table.clone(), table.clone());
    let (t5, t6, s1, f1) = (
        table.clone(),
        table.clone(),
        serial.clone(),
        set_mode.clone(),
    );
    let (r1, od1) = (role.clone(), other_db.clone());
    let leaks: Vec<Leak> = vec![
        Leak {
            name: "open transaction with uncommitted writes",
            a: Box::new(move |c, _| {
                c.query_drop(format!("START TRANSACTION; INSERT INTO {t1} VALUES (1)"))
                    .unwrap()
            }),
            b: Box::new(move |c, admin| {
                let me = id(c);
                let in_tx: Option<i64> = admin
                    .exec_first(
                        "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
                         WHERE trx_mysql_thread_id = ?",
                        (me,),
                    )
                    .unwrap();
                assert_eq!(in_tx, Some(0), "still inside A's transaction");
                let n: Option<i64> = admin
                    .query_first(format!("SELECT COUNT(*) FROM {MARIADB_DATABASE}.{t2}"))
                    .unwrap();
                assert_eq!(n, Some(0), "A's insert was committed");
            }),
        },
        Leak {
            name: "autocommit turned off",
            a: Box::new(|c, _| c.query_drop("SET autocommit = 0").unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT @@autocommit"), Some("1".into()))),
        },
        Leak {
            name: "session variable",
            a: Box::new(|c, _| {
                c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES'")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(c, "SELECT @@SESSION.sql_mode = @@GLOBAL.sql_mode"),
                    Some("1".into())
                )
            }),
        },
        Leak {
            name: "user variable",
            a: Box::new(|c, _| c.query_drop("SET @tenant_id = 42").unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT @tenant_id"), None)),
        },
        Leak {
            name: "character set (SET NAMES)",
            a: Box::new(|c, _| c.query_drop("SET NAMES latin1").unwrap()),
            b: Box::new(move |c, _| {
                let now = text(
                    c,
                    "SELECT CONCAT_WS(',', @@character_set_client, @@character_set_connection, \
                     @@character_set_results, @@collation_connection)",
                );
                assert_eq!(now, charset_before);
            }),
        },
        Leak {
            name: "temporary table",
            a: Box::new(|c, _| {
                c.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
                    .unwrap()
            }),
            b: Box::new(|c, _| {
                c.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
                    .unwrap()
            }),
        },
        Leak {
            name: "user-level lock (GET_LOCK)",
            a: Box::new(|c, _| c.query_drop("DO GET_LOCK('pool_iso_lock', 0)").unwrap()),
            b: Box::new(|c, admin| {
                assert_eq!(text(c, "SELECT IS_USED_LOCK('pool_iso_lock')"), None);
                let got: Option<i64> = admin
                    .query_first("SELECT GET_LOCK('pool_iso_lock', 0)")
                    .unwrap();
                assert_eq!(got, Some(1), "another session cannot take the lock");
                admin
                    .query_drop("DO RELEASE_LOCK('pool_iso_lock')")
                    .unwrap();
            }),
        },
        Leak {
            name: "LOCK TABLES",
            a: Box::new(move |c, _| c.query_drop(format!("LOCK TABLES {t3} WRITE")).unwrap()),
            b: Box::new(move |_, admin| {
                // Another session can write: the table lock is gone.
                admin
                    .query_drop("SET SESSION lock_wait_timeout = 2")
                    .unwrap();
                admin
                    .query_drop(format!("INSERT INTO {MARIADB_DATABASE}.{t4} VALUES (9)"))
                    .unwrap();
                admin
                    .query_drop(format!("DELETE FROM {MARIADB_DATABASE}.{t4}"))
                    .unwrap();
            }),
        },
        Leak {
            name: "SQL PREPARE",
            a: Box::new(|c, _| c.query_drop("PREPARE leaked FROM 'SELECT 1'").unwrap()),
            b: Box::new(|c, _| assert!(c.query_drop("EXECUTE leaked").is_err())),
        },
        Leak {
            name: "USE of another database",
            a: Box::new(move |c, _| c.query_drop(format!("USE {od1}")).unwrap()),
            b: Box::new(|c, _| {
                assert_eq!(text(c, "SELECT DATABASE()"), Some(MARIADB_DATABASE.into()))
            }),
        },
        Leak {
            name: "SET ROLE",
            a: Box::new(move |c, _| c.query_drop(format!("SET ROLE {r1}")).unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT CURRENT_ROLE()"), None)),
        },
        Leak {
            name: "LAST_INSERT_ID",
            a: Box::new(|c, _| c.query_drop("SELECT LAST_INSERT_ID(77)").unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT LAST_INSERT_ID()"), Some("0".into()))),
        },
        // What the server's session-state reports do not show (the pool
        // reads the statement's text, or cannot tell), and the light resets.
        Leak {
            name: "open transaction begun by a statement of its own (light reset)",
            a: Box::new(move |c, _| {
                c.query_drop("BEGIN").unwrap();
                c.exec_drop(format!("INSERT INTO {t5} VALUES (?)"), (5,))
                    .unwrap();
            }),
            b: Box::new(move |c, admin| {
                let me = id(c);
                let in_tx: Option<i64> = admin
                    .exec_first(
                        "SELECT COUNT(*) FROM information_schema.INNODB_TRX \
                         WHERE trx_mysql_thread_id = ?",
                        (me,),
                    )
                    .unwrap();
                assert_eq!(in_tx, Some(0), "still inside A's transaction");
                let n: Option<i64> = admin
                    .query_first(format!("SELECT COUNT(*) FROM {MARIADB_DATABASE}.{t6}"))
                    .unwrap();
                assert_eq!(n, Some(0), "A's insert was committed");
            }),
        },
        Leak {
            name: "LAST_INSERT_ID of an AUTO_INCREMENT insert (light reset)",
            a: Box::new(move |c, _| {
                c.query_drop(format!("INSERT INTO {s1} () VALUES ()"))
                    .unwrap()
            }),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT LAST_INSERT_ID()"), Some("0".into()))),
        },
        Leak {
            name: "user variable set with := in a SELECT",
            a: Box::new(|c, _| {
                let _: Option<i64> = c.query_first("SELECT @tenant := 7").unwrap();
            }),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT @tenant"), None)),
        },
        Leak {
            name: "user variable set with SELECT … INTO",
            a: Box::new(|c, _| c.query_drop("SELECT 8 INTO @into_var").unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT @into_var"), None)),
        },
        Leak {
            name: "session variable set by a stored function in a SELECT",
            a: Box::new(move |c, _| {
                let _: Option<i64> = c.query_first(format!("SELECT {f1}()")).unwrap();
            }),
            b: Box::new(|c, _| {
                assert_eq!(
                    text(c, "SELECT @@SESSION.sql_mode = @@GLOBAL.sql_mode"),
                    Some("1".into())
                )
            }),
        },
        Leak {
            name: "user-level lock taken by a prepared statement",
            a: Box::new(|c, _| {
                let _: Option<i64> = c
                    .exec_first("SELECT GET_LOCK(?, 0)", ("pool_iso_lock2",))
                    .unwrap();
            }),
            b: Box::new(|c, _| {
                assert_eq!(text(c, "SELECT IS_USED_LOCK('pool_iso_lock2')"), None);
            }),
        },
        Leak {
            name: "user variable set by the second statement of a text",
            a: Box::new(|c, _| c.query_drop("SELECT 1; SET @second = 2").unwrap()),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT @second"), None)),
        },
        Leak {
            name: "transaction left open through the inner mysql::Conn",
            a: Box::new(|c, _| {
                let conn: &mut Conn = c;
                conn.query_drop("BEGIN").unwrap();
                conn.query_drop("SET @inner = 1").unwrap();
            }),
            b: Box::new(|c, _| assert_eq!(text(c, "SELECT @inner"), None)),
        },
    ];

    let first_id = id(&mut pool.get().unwrap());
    for leak in &leaks {
        {
            let mut a = pool.get().unwrap();
            (leak.a)(&mut a, &mut admin);
            assert!(a.was_used());
        }
        let mut b = pool.get().unwrap();
        assert!(!b.was_used(), "{}: the connection was not reset", leak.name);
        assert_eq!(
            id(&mut b),
            first_id,
            "{}: not the same connection",
            leak.name
        );
        (leak.b)(&mut b, &mut admin);
        println!("isolated: {}", leak.name);
    }
    assert_eq!(pool.state().total, 1);
    drop(pool);
    admin
        .query_drop(format!(
            "DROP TABLE {MARIADB_DATABASE}.{table}; DROP TABLE {MARIADB_DATABASE}.{serial}; \
             DROP FUNCTION {MARIADB_DATABASE}.{set_mode}; DROP DATABASE {other_db}; \
             DROP ROLE {role}; DROP USER '{user}'@'%'"
        ))
        .unwrap();
}

#[test]
fn rollback_isolation_ends_transactions_only() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let table = unique("rb_rows");
    let pool = pool_of_one(&db.url(), Isolation::Rollback);
    pool.get()
        .unwrap()
        .query_drop(format!("CREATE TABLE {table} (x INT) ENGINE=InnoDB"))
        .unwrap();
    {
        let mut a = pool.get().unwrap();
        a.query_drop("SET @kept = 'yes'").unwrap();
        a.query_drop(format!("START TRANSACTION; INSERT INTO {table} VALUES (1)"))
            .unwrap();
    }
    let mut b = pool.get().unwrap();
    let n: Option<i64> = b
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .unwrap();
    assert_eq!(n, Some(0), "A's insert was committed");
    assert_eq!(text(&mut b, "SELECT @kept"), Some("yes".into()));
    b.query_drop(format!("DROP TABLE {table}")).unwrap();
}

#[test]
fn no_isolation_leaves_the_session_alone() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let pool = pool_of_one(&db.url(), Isolation::None);
    pool.get().unwrap().query_drop("SET @kept = 'yes'").unwrap();
    let mut b = pool.get().unwrap();
    assert_eq!(text(&mut b, "SELECT @kept"), Some("yes".into()));
}

#[test]
fn an_unused_borrow_sends_nothing() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let mut admin = root(db);
    let user = unique("unused");
    let url = with_params(&own_user(db, &mut admin, &user), "test_on_check_out=false");
    let pool = pool_of_one(&url, Isolation::Full);
    pool.get().unwrap().query_drop("SELECT 'marker'").unwrap();
    // TIME_MS counts the time since the connection's last command.
    let mut idle_ms = || -> f64 {
        admin
            .exec_first(
                "SELECT TIME_MS FROM information_schema.PROCESSLIST WHERE USER = ?",
                (&user,),
            )
            .unwrap()
            .unwrap()
    };
    let start = Instant::now();
    let before = idle_ms();
    for _ in 0..20 {
        let conn = pool.get().unwrap();
        assert!(!conn.was_used());
        let _ = conn.connection_id(); // read-only access does not count as use
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = idle_ms();
    let waited = start.elapsed().as_secs_f64() * 1000.0;
    assert!(
        after >= before + waited * 0.8,
        "the connection talked to the server: idle {before} ms, then {after} ms after {waited} ms"
    );
    drop(pool);
    admin.query_drop(format!("DROP USER '{user}'@'%'")).unwrap();
}

#[test]
fn a_full_reset_runs_the_init_statements_again_and_selects_the_database() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let opts = mysql::OptsBuilder::from_opts(mysql::Opts::from_url(&db.url()).unwrap())
        .prefer_socket(false)
        .init(vec!["SET @pool_init = 'ran'"]);
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(5))
        .build(MysqlManager::new(opts))
        .expect("pool");
    {
        let mut a = pool.get().unwrap();
        assert_eq!(text(&mut a, "SELECT @pool_init"), Some("ran".into()));
        a.query_drop("SET @pool_init = 'changed'; USE mysql")
            .unwrap();
    }
    let mut b = pool.get().unwrap();
    assert_eq!(text(&mut b, "SELECT @pool_init"), Some("ran".into()));
    assert_eq!(
        text(&mut b, "SELECT DATABASE()"),
        Some(MARIADB_DATABASE.into())
    );
}
