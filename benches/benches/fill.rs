//! Time to fill a pool of 20 from nothing (plain `main`), issue 21 item 2:
//! pool-core with `parallel_connects` 1, 2, 4 and 8 against r2d2 (which
//! opens connections on its 3 helper threads), on the simulated database
//! with a 20 ms connect and on a throwaway PostgreSQL server (SCRAM logins
//! over loopback TCP).
//!
//! Each row is the median of 5 fills: from `build` until 20 connections are
//! open (pool-core: its idle count; r2d2: its state; the simulated database
//! also counts them itself). `BENCH_NO_DB=1` skips PostgreSQL. Does nothing
//! under `cargo test`. Numbers: `docs/performance.md`, "Filling the pool".

use std::time::{Duration, Instant};

use benches::db::PgManager;
use benches::report::{self, BenchArgs, NO_DB_ENV};
use pool_sim::SimDb;
use pool_testkit::PgServer;

const SIZE: u32 = 20;
const ROUNDS: usize = 5;
const WIDTHS: [u32; 4] = [1, 2, 4, 8];

/// r2d2 over the simulated database.
struct R2d2Sim(SimDb);

impl r2d2::ManageConnection for R2d2Sim {
    type Connection = pool_sim::SimConn;
    type Error = pool_sim::SimError;
    fn connect(&self) -> Result<Self::Connection, Self::Error> {
        self.0.connect()
    }
    fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        conn.ping(Duration::from_secs(1))
    }
    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.is_broken()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < give_up, "the pool did not fill in 30 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Median fill time of `fill`, which builds a pool, waits until it holds
/// `SIZE` connections and returns it (dropped after the clock stops).
fn time<P>(mut fill: impl FnMut() -> P) -> Duration {
    median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                let pool = fill();
                let took = start.elapsed();
                drop(pool);
                std::thread::sleep(Duration::from_millis(50)); // let the server settle
                took
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn sim_rows(rows: &mut Vec<Vec<String>>) {
    for width in WIDTHS {
        let took = time(|| {
            let db = SimDb::builder()
                .connect_latency(Duration::from_millis(20))
                .build();
            let pool = pool_core::Pool::builder()
                .max_size(SIZE)
                .parallel_connects(width)
                .build(db.manager())
                .unwrap();
            wait_for(|| pool.state().idle == SIZE);
            pool
        });
        rows.push(vec![
            "pool-sim, 20 ms connect".into(),
            format!("pool-core, parallel_connects {width}"),
            ms(took),
        ]);
    }
    let took = time(|| {
        let db = SimDb::builder()
            .connect_latency(Duration::from_millis(20))
            .build();
        let pool = r2d2::Pool::builder()
            .max_size(SIZE)
            .build(R2d2Sim(db))
            .unwrap();
        wait_for(|| pool.state().idle_connections == SIZE);
        pool
    });
    rows.push(vec![
        "pool-sim, 20 ms connect".into(),
        "r2d2 (3 helper threads)".into(),
        ms(took),
    ]);
}

fn postgres_rows(rows: &mut Vec<Vec<String>>) -> Result<(), String> {
    PgServer::binaries_available()?;
    let server = PgServer::start().map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let url = server.url();
    let manager = PgManager::new(&url).map_err(|e| e.to_string())?;
    for width in WIDTHS {
        let took = time(|| {
            let pool = pool_core::Pool::builder()
                .max_size(SIZE)
                .parallel_connects(width)
                .build(manager.clone())
                .unwrap();
            wait_for(|| pool.state().idle == SIZE);
            pool
        });
        rows.push(vec![
            "PostgreSQL".into(),
            format!("pool-core, parallel_connects {width}"),
            ms(took),
        ]);
    }
    let config: postgres::Config = url.parse().map_err(|e: postgres::Error| e.to_string())?;
    let took = time(|| {
        let pool = r2d2::Pool::builder()
            .max_size(SIZE)
            .build(r2d2_postgres::PostgresConnectionManager::new(
                config.clone(),
                postgres::NoTls,
            ))
            .unwrap();
        wait_for(|| pool.state().idle_connections == SIZE);
        pool
    });
    rows.push(vec![
        "PostgreSQL".into(),
        "r2d2 (3 helper threads)".into(),
        ms(took),
    ]);
    Ok(())
}

fn main() {
    let args = BenchArgs::from_env();
    if !args.bench {
        eprintln!("fill: not run under `cargo test`; use `cargo bench -p benches --bench fill`");
        return;
    }
    let mut rows = vec![vec![
        "database".into(),
        "pool".into(),
        "fill 20 (median of 5)".into(),
    ]];
    sim_rows(&mut rows);
    if std::env::var(NO_DB_ENV).is_ok_and(|v| v == "1") {
        eprintln!("fill: PostgreSQL skipped ({NO_DB_ENV}=1)");
    } else if let Err(why) = postgres_rows(&mut rows) {
        eprintln!("fill: PostgreSQL skipped: {why}");
    }
    println!("\nTime to fill a pool of {SIZE} from nothing");
    report::print_table(&rows);
}
