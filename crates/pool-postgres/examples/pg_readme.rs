//! The README's PostgreSQL example (kept compiling here).
//! Run: `cargo run -p pool-postgres --example pg_readme -- postgres://user:pw@127.0.0.1/db`

use pool_postgres::is_connection_error;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1/postgres?connection_limit=8".into());
    // Pool settings can travel in the URL (connection_limit, pool_timeout, ...).
    let (builder, manager) = pool_postgres::builder_from_url(&url)?;
    let pool = builder
        .name("orders")
        .connection_timeout(Duration::from_secs(5))
        .build(manager)?;
    pool_postgres::check_pool_capacity(&pool); // warns if max_size is a big share of the server

    let mut conn = pool.get()?;
    match conn.query_one("SELECT 41 + 1", &[]) {
        Ok(row) => println!("answer: {}", row.get::<_, i32>(0)),
        // A broken connection must not go back to the pool.
        Err(e) if is_connection_error(&e) => conn.mark_broken(),
        Err(e) => return Err(e.into()),
    }
    println!("{}", pool.health());
    Ok(())
}
