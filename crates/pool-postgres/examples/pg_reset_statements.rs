//! What each statement of the `Isolation::Full` reset batch costs, against a
//! throwaway local PostgreSQL server: the whole batch, the batch without each
//! statement in turn (what that statement adds), and the look-up of SQL
//! `PREPARE`d statements as the number of protocol-level statements the
//! session holds grows (the driver's statement cache keeps up to 100).
//!
//! ```text
//! cargo run --release -p pool-postgres --example pg_reset_statements [iterations [rounds [label filter]]]
//! ```
//!
//! Every figure is the server's own work per `simple_query` call: the CPU
//! time of the connection's backend process (from `/proc/<pid>/schedstat`,
//! so other processes on the machine do not count), the best of `rounds`
//! rounds of `iterations` calls, every case once per round (interleaved),
//! after a warm-up round. The client's round trip is not in it.

use std::time::Duration;

use pool_postgres::NoTls;
use pool_testkit::PgServer;

/// The `Isolation::Full` batch, statement by statement (keep in step with
/// `FULL_SQL` in the crate's `lib.rs`).
const FULL: &[&str] = &[
    "SET LOCAL client_min_messages TO error",
    "BEGIN",
    "ROLLBACK",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "CLOSE ALL",
    "UNLISTEN *",
    "SELECT pg_catalog.pg_advisory_unlock_all()",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
    "SELECT s.name AS pool_reset_prepared FROM pg_catalog.pg_prepared_statement() s WHERE s.from_sql",
];

/// The backend's CPU time so far (`/proc/<pid>/schedstat`, in ns).
fn cpu(pid: i32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A connection and its backend's process id.
struct Session {
    client: postgres::Client,
    pid: i32,
}

impl Session {
    /// A new connection holding `held` protocol-level prepared statements.
    fn open(url: &str, held: usize) -> Session {
        let mut client = postgres::Client::connect(url, NoTls).unwrap();
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        for i in 0..held {
            // Kept by the server until the connection closes (the driver
            // closes a statement only when its `Statement` is dropped).
            std::mem::forget(client.prepare(&format!("SELECT {i}::int4")).unwrap());
        }
        Session { client, pid }
    }

    /// The backend's CPU time per `simple_query(sql)`, over `n` calls.
    fn time(&mut self, n: u32, sql: &str) -> Duration {
        let start = cpu(self.pid);
        for _ in 0..n {
            self.client.simple_query(sql).unwrap();
        }
        (cpu(self.pid) - start) / n
    }
}

fn main() {
    if let Err(e) = PgServer::binaries_available() {
        eprintln!("skipped: {e}");
        return;
    }
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    // Only the cases whose label contains this, when given.
    let only = args.next();
    let pg = PgServer::start().expect("start postgres");
    let url = pg.url();
    let held = [0usize, 10, 100];
    let mut sessions: Vec<Session> = held.iter().map(|&h| Session::open(&url, h)).collect();

    let full = FULL.join("; ");
    let without = |skip: usize| -> String {
        FULL.iter()
            .enumerate()
            .filter(|&(i, _)| i != skip)
            .map(|(_, s)| *s)
            .collect::<Vec<_>>()
            .join("; ")
    };
    // (label, session index, SQL)
    let mut cases: Vec<(String, usize, String)> = vec![
        ("empty query".into(), 0, String::new()),
        ("SELECT 1".into(), 0, "SELECT 1".into()),
    ];
    for (i, h) in held.iter().enumerate() {
        cases.push((format!("Full batch, {h} statements held"), i, full.clone()));
    }
    for (i, h) in held.iter().enumerate() {
        cases.push((
            format!("look-up alone, {h} statements held"),
            i,
            FULL[FULL.len() - 1].into(),
        ));
    }
    for (i, sql) in FULL.iter().enumerate() {
        cases.push((format!("without: {}", truncate(sql)), 0, without(i)));
    }
    for sql in FULL {
        cases.push((format!("alone: {}", truncate(sql)), 0, (*sql).into()));
    }
    for (label, sql) in EXTRA {
        for (i, h) in held.iter().enumerate() {
            cases.push((format!("{label}, {h} held"), i, (*sql).into()));
        }
    }

    if let Some(only) = &only {
        cases.retain(|(label, _, _)| label.contains(only.as_str()));
    }
    let facts = sessions[0]
        .client
        .query_one(
            "SELECT pg_catalog.version(), pg_catalog.pg_get_viewdef('pg_catalog.pg_prepared_statements'), \
             (SELECT proacl::text FROM pg_catalog.pg_proc WHERE proname = 'pg_prepared_statement')",
            &[],
        )
        .unwrap();
    let version: String = facts.get(0);
    let viewdef: String = facts.get(1);
    let acl: Option<String> = facts.get(2);
    println!("{version}");
    println!("pg_prepared_statements is:{viewdef}");
    println!("pg_prepared_statement() ACL: {acl:?} (None: anyone may call it)\n");
    let mut best = vec![Duration::MAX; cases.len()];
    for round in 0..=rounds {
        for (k, (_, session, sql)) in cases.iter().enumerate() {
            let t = sessions[*session].time(n, sql);
            // Round 0 warms up.
            if round > 0 {
                best[k] = best[k].min(t);
            }
        }
    }
    for ((label, _, _), t) in cases.iter().zip(&best) {
        println!("{label:<80} {:>7.1} µs", us(*t));
    }
}

/// Candidate batches, timed next to the current one.
const EXTRA: &[(&str, &str)] = &[
    (
        "Full batch, advisory unlock in the look-up (UNION ALL)",
        "SET LOCAL client_min_messages TO error; BEGIN; ROLLBACK; \
         SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
         DISCARD TEMP; DISCARD SEQUENCES; \
         SELECT s.name AS pool_reset_prepared FROM pg_catalog.pg_prepared_statement() s \
         WHERE s.from_sql UNION ALL SELECT NULL FROM pg_catalog.pg_advisory_unlock_all()",
    ),
    (
        "Full batch, look-up through the view (before)",
        "SET LOCAL client_min_messages TO error; BEGIN; ROLLBACK; \
         SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
         SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
         SELECT name AS pool_reset_prepared FROM pg_catalog.pg_prepared_statements WHERE from_sql",
    ),
    (
        "Full batch without the look-up",
        "SET LOCAL client_min_messages TO error; BEGIN; ROLLBACK; \
         SET SESSION AUTHORIZATION DEFAULT; RESET ALL; CLOSE ALL; UNLISTEN *; \
         SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES",
    ),
    (
        "look-up alone, through the view (before)",
        "SELECT name AS pool_reset_prepared FROM pg_catalog.pg_prepared_statements WHERE from_sql",
    ),
    ("DISCARD ALL (for comparison)", "DISCARD ALL"),
];

fn truncate(s: &str) -> String {
    if s.len() > 60 {
        format!("{}…", &s[..59])
    } else {
        s.to_owned()
    }
}
