//! Three scenarios against throwaway PostgreSQL and MariaDB servers started
//! with pool-testkit (plain `main`):
//!
//! * `SELECT 1` (simple query protocol);
//! * a short transaction, as users write it with the driver's API:
//!   `BEGIN`, `UPDATE` one row (the thread's own), `SELECT` it, `COMMIT`;
//! * a prepared-statement query (`SELECT $1 + 1`), prepared the way each
//!   pool's users would: pool-postgres with `prepare_cached`, the others
//!   with `prepare` on every loan (raw-held once); on MariaDB every variant
//!   through the driver's own statement cache (which pool-mysql's full
//!   reset, when a loan needs it, empties).
//!
//! Every pool holds 4 connections; each is run with 1 and with 8 threads,
//! and every thread loops "borrow, work, return" for a fixed time. Each
//! row also reports the whole process's context switches per query
//! (`LoadResult::switches_per_cycle`): the thread hand-offs a loan costs.
//!
//! PostgreSQL:
//! * `pool-core`: pool-core defaults over a minimal manager doing what
//!   r2d2_postgres does ([`benches::db::PgManager`]);
//! * `pool-postgres`: pool-core over pool-postgres's manager with its
//!   defaults (it resets only what the text of a loan's statements shows
//!   the loan left: these scenarios' loans leave nothing);
//! * `pool-postgres none`: the same with `Isolation::None` (issue 18's
//!   target: the defaults at ≥ 0.8× of it);
//! * `r2d2`: r2d2 defaults over r2d2_postgres (checks every connection on
//!   checkout: one more round trip);
//! * `connect-per-query`: no pool, a new connection (SCRAM) per query;
//! * `raw-held`: no pool, each thread owns one connection (so 8 connections
//!   at 8 threads: a ceiling, not a peer).
//!
//! MariaDB, every variant over loopback TCP: `pool-core` (over
//! [`benches::db::MinimalMysqlManager`]), `pool-mysql` (pool-core over pool-mysql's
//! manager with its defaults: it resets only what the server's session-state
//! reports show a loan left, so these scenarios' loans cost no reset),
//! `pool-mysql none` (the same with `Isolation::None`), `r2d2`
//! (r2d2_mysql, which also pings in `has_broken`, i.e. on every return),
//! `mysql::Pool` (its defaults but 4 connections: it pings on checkout and
//! resets the connection on return), `connect-per-query`, `raw-held`.
//!
//! Skips a database, with a message, when its server binaries are missing;
//! `BENCH_NO_DB=1` skips both. Does nothing under `cargo test`. Writes
//! `realdb.json` for `cargo xtask bench`.

use std::time::Duration;

use benches::db::{MinimalMysqlManager, PgManager};
use benches::load::run_ops;
use benches::report::{self, BenchArgs, NO_DB_ENV};
use mysql::prelude::Queryable;
use pool_testkit::{MariaDbServer, PgServer};
use serde_json::{json, Value};

const POOL_SIZE: u32 = 4;
const THREADS: [usize; 2] = [1, 8];
const ROUNDS: usize = 3;
const RUN_FOR: Duration = Duration::from_millis(700);

/// A named way of running a scenario: `make(thread)` returns the
/// per-thread operation.
type Variant<'a> = (
    &'static str,
    Box<dyn Fn(usize) -> Box<dyn FnMut() + 'a> + Sync + 'a>,
);

/// What each borrow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Select1,
    Transaction,
    Prepared,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Select1, Scenario::Transaction, Scenario::Prepared];

    fn name(self) -> &'static str {
        match self {
            Scenario::Select1 => "SELECT 1",
            Scenario::Transaction => "short transaction (BEGIN; UPDATE; SELECT; COMMIT)",
            Scenario::Prepared => "prepared-statement query",
        }
    }

    /// The key of its results in `realdb.json` (`SELECT 1`'s stay at the
    /// top level, where `cargo xtask bench` reads them).
    fn key(self) -> &'static str {
        match self {
            Scenario::Select1 => "select1",
            Scenario::Transaction => "transaction",
            Scenario::Prepared => "prepared",
        }
    }
}

/// Rows the transaction scenario updates: one per thread.
const TX_ROWS: usize = 16;

/// The prepared scenario's statement.
const PG_PREPARED: &str = "SELECT $1::int4 + 1";
const MY_PREPARED: &str = "SELECT ? + 1";

/// One borrow's work on PostgreSQL, on any `Client`; `stmt` is a statement
/// prepared earlier (raw-held, `prepare_cached`), if any.
/// One borrow's work on PostgreSQL, as each pool's users write it: the
/// client's methods (pool-postgres's connection has its own, watched, with
/// the same signatures).
macro_rules! pg_work {
    ($s:expr, $c:expr, $id:expr, $stmt:expr) => {{
        let id = $id as i32;
        match $s {
            Scenario::Select1 => {
                $c.simple_query("SELECT 1").unwrap();
            }
            Scenario::Transaction => {
                let mut tx = $c.transaction().unwrap();
                tx.execute("UPDATE bench_tx SET n = n + 1 WHERE id = $1", &[&id])
                    .unwrap();
                let _: i64 = tx
                    .query_one("SELECT n FROM bench_tx WHERE id = $1", &[&id])
                    .unwrap()
                    .get(0);
                tx.commit().unwrap();
            }
            Scenario::Prepared => {
                let prepared;
                let stmt: &postgres::Statement = match $stmt {
                    Some(stmt) => stmt,
                    None => {
                        prepared = $c.prepare(PG_PREPARED).unwrap();
                        &prepared
                    }
                };
                let _: i32 = $c.query_one(stmt, &[&id]).unwrap().get(0);
            }
        }
    }};
}

fn pg_work(s: Scenario, c: &mut postgres::Client, id: usize, stmt: Option<&postgres::Statement>) {
    pg_work!(s, c, id, stmt)
}

fn pg_pooled_work(
    s: Scenario,
    c: &mut pool_postgres::PgConnection,
    id: usize,
    stmt: Option<&postgres::Statement>,
) {
    pg_work!(s, c, id, stmt)
}

/// One borrow's work on MariaDB, on any `Conn`.
/// The transaction scenario, as each pool's users write it: the driver's
/// `start_transaction` (pool-mysql's connection has its own, watched, with
/// the same methods).
macro_rules! my_transaction {
    ($c:expr, $id:expr) => {{
        let mut tx = $c.start_transaction(mysql::TxOpts::default()).unwrap();
        tx.exec_drop("UPDATE bench_tx SET n = n + 1 WHERE id = ?", ($id,))
            .unwrap();
        let _: Option<i64> = tx
            .exec_first("SELECT n FROM bench_tx WHERE id = ?", ($id,))
            .unwrap();
        tx.commit().unwrap();
    }};
}

/// A MariaDB connection as each pool lends it: its users call `Queryable`
/// methods and `start_transaction` on it.
trait MyConn: Queryable {
    fn transaction_scenario(&mut self, id: usize);
}

impl MyConn for mysql::Conn {
    fn transaction_scenario(&mut self, id: usize) {
        my_transaction!(self, id)
    }
}

impl MyConn for pool_mysql::MysqlConnection {
    fn transaction_scenario(&mut self, id: usize) {
        my_transaction!(self, id)
    }
}

fn my_work(s: Scenario, c: &mut impl MyConn, id: usize) {
    match s {
        Scenario::Select1 => c.query_drop("SELECT 1").unwrap(),
        Scenario::Transaction => c.transaction_scenario(id),
        Scenario::Prepared => {
            let _: Option<i64> = c.exec_first(MY_PREPARED, (id,)).unwrap();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs every variant with 1 and 8 threads, `ROUNDS` times in rotated order;
/// returns queries/s and context switches per query (medians over rounds)
/// per thread count and variant.
fn measure(db: &str, scenario: Scenario, variants: &[Variant<'_>]) -> Value {
    let mut qps: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); variants.len()]; THREADS.len()];
    let mut csw = qps.clone();
    for round in 0..ROUNDS {
        for (t, &threads) in THREADS.iter().enumerate() {
            for k in 0..variants.len() {
                let v = (round + k) % variants.len();
                let (name, make) = &variants[v];
                let r = run_ops(threads, RUN_FOR, &|i| make(i));
                eprintln!(
                    "{db} {} round {round}: {name:<18} {threads} thread(s): {}, {:.2} context switches per query",
                    scenario.key(),
                    report::rate(r.throughput()),
                    r.switches_per_cycle()
                );
                qps[t][v].push(r.throughput());
                csw[t][v].push(r.switches_per_cycle());
            }
        }
    }
    let mut rows = vec![{
        let mut h = vec!["variant".to_string()];
        for threads in THREADS {
            h.push(format!("{threads} thr q/s"));
            h.push("pool-core ÷ it".into());
            h.push("csw/query".into());
        }
        h
    }];
    let mut by_threads = serde_json::Map::new();
    let medians: Vec<Vec<f64>> = qps
        .iter()
        .map(|per_variant| per_variant.iter().cloned().map(median).collect())
        .collect();
    let switches: Vec<Vec<f64>> = csw
        .iter()
        .map(|per_variant| per_variant.iter().cloned().map(median).collect())
        .collect();
    for (v, (name, _)) in variants.iter().enumerate() {
        let mut row = vec![name.to_string()];
        for (t, per_variant) in medians.iter().enumerate() {
            row.push(report::rate(per_variant[v]));
            row.push(format!("{:.2}×", per_variant[0] / per_variant[v]));
            row.push(format!("{:.2}", switches[t][v]));
        }
        rows.push(row);
    }
    for (t, threads) in THREADS.iter().enumerate() {
        let per_variant: serde_json::Map<_, _> = variants
            .iter()
            .enumerate()
            .map(|(v, (name, _))| (name.to_string(), json!(medians[t][v])))
            .collect();
        by_threads.insert(threads.to_string(), Value::Object(per_variant));
    }
    let mut switches_by_threads = serde_json::Map::new();
    for (t, threads) in THREADS.iter().enumerate() {
        let per_variant: serde_json::Map<_, _> = variants
            .iter()
            .enumerate()
            .map(|(v, (name, _))| (name.to_string(), json!(switches[t][v])))
            .collect();
        switches_by_threads.insert(threads.to_string(), Value::Object(per_variant));
    }
    println!(
        "\n{db}: {}, pool of {POOL_SIZE}, borrows per second and context switches per borrow, whole process (median of {ROUNDS} rounds of {RUN_FOR:?})",
        scenario.name()
    );
    report::print_table(&rows);
    json!({ "pool_size": POOL_SIZE, "qps": by_threads, "switches_per_query": switches_by_threads })
}

fn postgres_bench() -> Result<Value, String> {
    PgServer::binaries_available()?;
    let server = PgServer::start().map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let url = server.url();
    let err = |e: &dyn std::fmt::Display| e.to_string();

    let ours = pool_core::Pool::builder()
        .max_size(POOL_SIZE)
        .build(PgManager::new(&url).map_err(|e| err(&e))?)
        .map_err(|e| err(&e))?;
    let (manager, _) = pool_postgres::PostgresManager::from_url(&url).map_err(|e| err(&e))?;
    let none = pool_core::Pool::builder()
        .max_size(POOL_SIZE)
        .build(manager.clone().isolation(pool_postgres::Isolation::None))
        .map_err(|e| err(&e))?;
    let full = pool_core::Pool::builder()
        .max_size(POOL_SIZE)
        .build(manager)
        .map_err(|e| err(&e))?;
    let r2d2 = r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .build(r2d2_postgres::PostgresConnectionManager::new(
            url.parse().map_err(|e| err(&e))?,
            postgres::NoTls,
        ))
        .map_err(|e| err(&e))?;
    let config: postgres::Config = url.parse().map_err(|e| err(&e))?;
    let mut setup = config.connect(postgres::NoTls).map_err(|e| err(&e))?;
    setup
        .batch_execute(&format!(
            "CREATE TABLE bench_tx (id int4 PRIMARY KEY, n int8 NOT NULL DEFAULT 0); \
             INSERT INTO bench_tx (id) SELECT generate_series(0, {})",
            TX_ROWS - 1
        ))
        .map_err(|e| err(&e))?;

    let (ours, none, full, r2d2, config) = (&ours, &none, &full, &r2d2, &config);
    let mut results = serde_json::Map::new();
    for s in Scenario::ALL {
        let variants: Vec<Variant<'_>> = vec![
            (
                "pool-core",
                Box::new(move |i| Box::new(move || pg_work(s, &mut ours.get().unwrap(), i, None))),
            ),
            (
                "pool-postgres",
                Box::new(move |i| {
                    Box::new(move || {
                        let mut conn = full.get().unwrap();
                        let stmt = (s == Scenario::Prepared)
                            .then(|| conn.prepare_cached(PG_PREPARED).unwrap());
                        pg_pooled_work(s, &mut conn, i, stmt.as_ref());
                    })
                }),
            ),
            (
                "pool-postgres none",
                Box::new(move |i| {
                    Box::new(move || {
                        let mut conn = none.get().unwrap();
                        let stmt = (s == Scenario::Prepared)
                            .then(|| conn.prepare_cached(PG_PREPARED).unwrap());
                        pg_pooled_work(s, &mut conn, i, stmt.as_ref());
                    })
                }),
            ),
            (
                "r2d2",
                Box::new(move |i| Box::new(move || pg_work(s, &mut r2d2.get().unwrap(), i, None))),
            ),
            (
                "connect-per-query",
                Box::new(move |i| {
                    Box::new(move || {
                        let mut c = config.connect(postgres::NoTls).unwrap();
                        pg_work(s, &mut c, i, None);
                    })
                }),
            ),
            (
                "raw-held",
                Box::new(move |i| {
                    let mut c = config.connect(postgres::NoTls).unwrap();
                    let stmt = c.prepare(PG_PREPARED).unwrap();
                    Box::new(move || pg_work(s, &mut c, i, Some(&stmt)))
                }),
            ),
        ];
        results.insert(s.key().into(), measure("PostgreSQL", s, &variants));
    }
    Ok(with_select1_on_top(results))
}

/// The results by scenario, with `SELECT 1`'s also at the top level, where
/// `cargo xtask bench` reads them.
fn with_select1_on_top(mut results: serde_json::Map<String, Value>) -> Value {
    if let Some(Value::Object(select1)) = results.get(Scenario::Select1.key()).cloned() {
        results.extend(select1);
    }
    Value::Object(results)
}

fn mariadb_bench() -> Result<Value, String> {
    MariaDbServer::binaries_available()?;
    let server = MariaDbServer::start().map_err(|e| format!("cannot start MariaDB: {e}"))?;
    // TCP for everyone. The `mysql` crate's own default (`prefer_socket`)
    // would move every peer but pool-mysql (whose default is to connect
    // where the URL says) to the server's Unix socket, faster than
    // loopback TCP, and make each connect-per-query connect twice.
    let url = format!("{}?prefer_socket=false", server.url());
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let opts = mysql::Opts::from_url(&url).map_err(|e| err(&e))?;

    let ours = pool_core::Pool::builder()
        .max_size(POOL_SIZE)
        .build(MinimalMysqlManager::new(&url).map_err(|e| err(&e))?)
        .map_err(|e| err(&e))?;
    let (manager, _) = pool_mysql::MysqlManager::from_url(&url).map_err(|e| err(&e))?;
    let none = pool_core::Pool::builder()
        .max_size(POOL_SIZE)
        .build(manager.clone().isolation(pool_mysql::Isolation::None))
        .map_err(|e| err(&e))?;
    let full = pool_core::Pool::builder()
        .max_size(POOL_SIZE)
        .build(manager)
        .map_err(|e| err(&e))?;
    let r2d2 = r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .build(r2d2_mysql::MySqlConnectionManager::new(
            mysql::OptsBuilder::from_opts(opts.clone()),
        ))
        .map_err(|e| err(&e))?;
    let constraints = mysql::PoolConstraints::new(POOL_SIZE as usize, POOL_SIZE as usize)
        .ok_or("bad pool constraints")?;
    let theirs = mysql::Pool::new(
        mysql::OptsBuilder::from_opts(opts.clone())
            .pool_opts(mysql::PoolOpts::default().with_constraints(constraints)),
    )
    .map_err(|e| err(&e))?;

    let mut setup = mysql::Conn::new(opts.clone()).map_err(|e| err(&e))?;
    setup
        .query_drop("CREATE TABLE bench_tx (id INT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)")
        .map_err(|e| err(&e))?;
    for id in 0..TX_ROWS {
        setup
            .exec_drop("INSERT INTO bench_tx (id) VALUES (?)", (id,))
            .map_err(|e| err(&e))?;
    }

    let (ours, none, full, r2d2, theirs, opts) = (&ours, &none, &full, &r2d2, &theirs, &opts);
    let mut results = serde_json::Map::new();
    for s in Scenario::ALL {
        let variants: Vec<Variant<'_>> = vec![
            (
                "pool-core",
                Box::new(move |i| Box::new(move || my_work(s, &mut *ours.get().unwrap(), i))),
            ),
            (
                "pool-mysql",
                Box::new(move |i| Box::new(move || my_work(s, &mut *full.get().unwrap(), i))),
            ),
            (
                "pool-mysql none",
                Box::new(move |i| Box::new(move || my_work(s, &mut *none.get().unwrap(), i))),
            ),
            (
                "r2d2",
                Box::new(move |i| Box::new(move || my_work(s, &mut *r2d2.get().unwrap(), i))),
            ),
            (
                "mysql::Pool",
                Box::new(move |i| {
                    Box::new(move || my_work(s, theirs.get_conn().unwrap().as_mut(), i))
                }),
            ),
            (
                "connect-per-query",
                Box::new(move |i| {
                    Box::new(move || my_work(s, &mut mysql::Conn::new(opts.clone()).unwrap(), i))
                }),
            ),
            (
                "raw-held",
                Box::new(move |i| {
                    let mut c = mysql::Conn::new(opts.clone()).unwrap();
                    Box::new(move || my_work(s, &mut c, i))
                }),
            ),
        ];
        results.insert(s.key().into(), measure("MariaDB", s, &variants));
    }
    Ok(with_select1_on_top(results))
}

fn main() {
    let args = BenchArgs::from_env();
    if !args.bench {
        eprintln!(
            "realdb: not run under `cargo test` (it starts database servers); use `cargo bench`"
        );
        return;
    }
    let no_db = std::env::var(NO_DB_ENV).is_ok_and(|v| v == "1");
    let mut summary = serde_json::Map::new();
    type Bench = fn() -> Result<Value, String>;
    for (key, name, bench) in [
        ("postgres", "PostgreSQL", postgres_bench as Bench),
        ("mariadb", "MariaDB", mariadb_bench as Bench),
    ] {
        if !args.wants(key) && !args.wants("realdb") {
            continue;
        }
        let result = if no_db {
            Err(format!("{NO_DB_ENV}=1"))
        } else {
            bench()
        };
        let value = match result {
            Ok(v) => v,
            Err(msg) => {
                println!("\nSKIPPED {name}: {msg}");
                json!({ "skipped": msg })
            }
        };
        summary.insert(key.to_string(), value);
    }
    report::write_summary("realdb", &Value::Object(summary));
}
