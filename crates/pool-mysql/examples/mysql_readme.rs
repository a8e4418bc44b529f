//! The README's MySQL / MariaDB example (kept compiling here).
//! Run: `cargo run -p pool-mysql --example mysql_readme -- mysql://user:pw@127.0.0.1/db`

use pool_mysql::is_connection_error;
use pool_mysql::mysql::prelude::Queryable;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "mysql://root@127.0.0.1/test?connection_limit=8".into());
    let (builder, manager) = pool_mysql::builder_from_url(&url)?;
    let pool = builder
        .name("orders")
        .connection_timeout(Duration::from_secs(5))
        .build(manager)?;
    pool_mysql::check_pool_capacity(&pool);

    let mut conn = pool.get()?;
    match conn.query_first::<i64, _>("SELECT 41 + 1") {
        Ok(answer) => println!("answer: {answer:?}"),
        Err(e) if is_connection_error(&e) => conn.mark_broken(),
        Err(e) => return Err(e.into()),
    }
    println!("{}", pool.health());
    Ok(())
}
