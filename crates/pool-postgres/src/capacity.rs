//! Comparing a pool's size with what the server accepts.

use pool_core::Pool;
use postgres::{Client, SimpleQueryMessage};

use crate::PostgresManager;

pub use pool_core::capacity::Capacity;

/// Asks the server over `client` how many connections it accepts and logs a
/// warning (with the `log` crate) when `max_size` is more than `share` of
/// them. Exceeding the share is never an error: the report is returned for
/// the caller to act on.
///
/// Runs one simple query, so it also works through PgBouncer; there, though,
/// the limit that matters is PgBouncer's `max_client_conn`, not the server's.
///
/// ```no_run
/// # fn main() -> Result<(), postgres::Error> {
/// let mut client = postgres::Client::connect("host=localhost user=app", postgres::NoTls)?;
/// let capacity = pool_postgres::check_capacity(&mut client, "orders", 40, 0.5)?;
/// println!("{} connections available", capacity.available);
/// # Ok(()) }
/// ```
pub fn check_capacity(
    client: &mut Client,
    pool_name: &str,
    max_size: u32,
    share: f64,
) -> Result<Capacity, postgres::Error> {
    let rows = client.simple_query(
        "SELECT current_setting('max_connections'), \
                current_setting('superuser_reserved_connections'), \
                coalesce(current_setting('reserved_connections', true), '0')",
    )?;
    let (mut max_connections, mut reserved) = (0u32, 0u32);
    for message in rows {
        if let SimpleQueryMessage::Row(row) = message {
            let num = |i: usize| row.get(i).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
            max_connections = num(0);
            reserved = num(1).saturating_add(num(2));
        }
    }
    let capacity = Capacity::new(max_connections, reserved, max_size, share);
    if capacity.exceeds_share() {
        log::warn!(
            "{}",
            capacity.warning(pool_name, "PostgreSQL server", "psql")
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
/// and the manager's [`capacity_share`](PostgresManager::capacity_share), on
/// a connection borrowed from it.
///
/// Returns `None` (and logs why at `warn` level) when the check could not
/// run; never fails otherwise. [`pool_from_url`](crate::pool_from_url) calls it.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (builder, manager) = pool_postgres::builder_from_url("postgres://app@localhost/app")?;
/// let pool = builder.max_size(80).build(manager)?;
/// if let Some(c) = pool_postgres::check_pool_capacity(&pool) {
///     assert_eq!(c.max_size, 80);
/// }
/// # Ok(()) }
/// ```
pub fn check_pool_capacity<T>(pool: &Pool<PostgresManager<T>>) -> Option<Capacity>
where
    PostgresManager<T>: pool_core::ManageConnection<Connection = crate::PgConnection>,
{
    let share = pool.manager().get_capacity_share();
    let max_size = pool.config().max_size;
    let result = pool
        .get()
        .map_err(|e| pool_core::ErrorChain(&e).to_string())
        .and_then(|mut conn| {
            let client = conn
                .client_mut()
                .ok_or_else(|| "connection given up".to_owned())?;
            check_capacity(client, pool.name(), max_size, share)
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
