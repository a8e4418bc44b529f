//! Comparing a pool's size with what the server accepts.

use mysql::prelude::Queryable;
use mysql::Conn;
use pool_core::Pool;

use crate::MysqlManager;

pub use pool_core::capacity::Capacity;

/// Asks the server over `conn` how many connections it accepts
/// (`@@max_connections`) and logs a warning (with the `log` crate) when
/// `max_size` is more than `share` of them. Exceeding the share is never an
/// error: the report is returned for the caller to act on.
///
/// ```no_run
/// # fn main() -> Result<(), mysql::Error> {
/// let mut conn = mysql::Conn::new("mysql://app:pw@localhost/app")?;
/// let capacity = pool_mysql::check_capacity(&mut conn, "orders", 40, 0.5)?;
/// println!("{} connections available", capacity.available);
/// # Ok(()) }
/// ```
pub fn check_capacity(
    conn: &mut Conn,
    pool_name: &str,
    max_size: u32,
    share: f64,
) -> Result<Capacity, mysql::Error> {
    let max_connections: Option<u32> = conn.query_first("SELECT @@max_connections")?;
    let capacity = Capacity::new(max_connections.unwrap_or(0), 0, max_size, share);
    if capacity.exceeds_share() {
        log::warn!(
            "{}",
            capacity.warning(pool_name, "MySQL server", "the mysql client")
        );
    } else {
        log::debug!(
            "pool \"{pool_name}\": max_size {max_size} of {} available server connections",
            capacity.available
        );
    }
    Ok(capacity)
}

/// Runs [`check_capacity`] for a built pool, with its name, its `max_size`
/// and the manager's [`capacity_share`](MysqlManager::capacity_share), on
/// a connection borrowed from it.
///
/// Returns `None` (and logs why at `warn` level) when the check could not
/// run; never fails otherwise. [`pool_from_url`](crate::pool_from_url) calls it.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (builder, manager) = pool_mysql::builder_from_url("mysql://app:pw@localhost/app")?;
/// let pool = builder.max_size(80).build(manager)?;
/// if let Some(c) = pool_mysql::check_pool_capacity(&pool) {
///     assert_eq!(c.max_size, 80);
/// }
/// # Ok(()) }
/// ```
pub fn check_pool_capacity(pool: &Pool<MysqlManager>) -> Option<Capacity> {
    let share = pool.manager().get_capacity_share();
    let max_size = pool.config().max_size;
    let result = pool
        .get()
        .map_err(|e| pool_core::ErrorChain(&e).to_string())
        .and_then(|mut conn| {
            check_capacity(conn.conn_mut(), pool.name(), max_size, share)
                .map_err(|e| pool_core::ErrorChain(&e).to_string())
        });
    match result {
        Ok(c) => {
            // Health advice never suggests more than the server allows.
            pool.set_server_capacity(Some(c.available));
            Some(c)
        }
        Err(e) => {
            log::warn!(
                "pool \"{}\": could not compare max_size with the server's max_connections: {e}",
                pool.name()
            );
            None
        }
    }
}
