//! Comparing a pool's size with what the server accepts.

use mysql::prelude::Queryable;
use mysql::Conn;
use pool_core::Pool;

use crate::MysqlManager;

/// How many connections the MySQL/MariaDB server accepts, compared with one
/// pool's `max_size`; returned by [`check_capacity`] and [`check_pool_capacity`].
///
/// ```
/// use pool_mysql::Capacity;
///
/// let c = Capacity::new(151, 0, 80, 0.5);
/// assert_eq!(c.available, 151);
/// assert!(c.exceeds_share()); // 80 > 50 % of 151
/// assert_eq!(c.instances_that_fit(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Capacity {
    /// The server's `@@max_connections`.
    pub max_connections: u32,
    /// Connections ordinary users cannot use. Always 0 for MySQL and MariaDB:
    /// their one extra connection for administrators (and MariaDB's
    /// `extra_max_connections`) comes on top of `max_connections`.
    pub reserved: u32,
    /// Connections open to ordinary roles: `max_connections - reserved`.
    pub available: u32,
    /// The pool's `max_size`.
    pub max_size: u32,
    /// The share of `available` one pool may take before a warning (0.5 = 50 %).
    pub share: f64,
}

impl Capacity {
    /// Builds a capacity report from the server's settings.
    pub fn new(max_connections: u32, reserved: u32, max_size: u32, share: f64) -> Self {
        Capacity {
            max_connections,
            reserved,
            available: max_connections.saturating_sub(reserved),
            max_size,
            share,
        }
    }

    /// True when `max_size` is more than `share` of the available connections.
    pub fn exceeds_share(&self) -> bool {
        f64::from(self.max_size) > self.share * f64::from(self.available)
    }

    /// How many processes running this pool at full size the server can take
    /// at once (total connections = instances × `max_size`).
    pub fn instances_that_fit(&self) -> u32 {
        self.available / self.max_size.max(1)
    }

    fn warning(&self, pool: &str) -> String {
        format!(
            "pool \"{pool}\": max_size {} is more than {:.0}% of the {} connections the \
             MySQL server accepts (max_connections {} minus {} \
             reserved). Every process running this pool opens up to max_size connections \
             (total = instances × max_size), so only {} instance(s) fit, with nothing left \
             for deployments, migrations or the mysql client. Lower max_size (a pool rarely needs more \
             than a few connections per CPU core of the database server) or raise \
             max_connections.",
            self.max_size,
            self.share * 100.0,
            self.available,
            self.max_connections,
            self.reserved,
            self.instances_that_fit(),
        )
    }
}

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
        log::warn!("{}", capacity.warning(pool_name));
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
    let result = pool.get().map_err(|e| e.to_string()).and_then(|mut conn| {
        let c = conn
            .conn_mut()
            .ok_or_else(|| "connection given up".to_owned())?;
        check_capacity(c, pool.name(), max_size, share).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_fit() {
        let c = Capacity::new(151, 0, 75, 0.5);
        assert!(!c.exceeds_share());
        assert_eq!(c.instances_that_fit(), 2);
        let c = Capacity::new(151, 0, 76, 0.5);
        assert!(c.exceeds_share());
        let w = c.warning("orders");
        assert!(w.contains("max_size 76"), "{w}");
        assert!(w.contains("50%"), "{w}");
        assert!(w.contains("151 connections"), "{w}");
        assert!(w.contains("instances × max_size"), "{w}");
    }

    #[test]
    fn degenerate_values() {
        let c = Capacity::new(3, 5, 0, 0.5);
        assert_eq!(c.available, 0);
        assert_eq!(c.instances_that_fit(), 0);
        assert!(!c.exceeds_share());
    }
}
