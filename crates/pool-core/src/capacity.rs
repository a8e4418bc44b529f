//! How many connections a database server accepts, against a pool's size.
//!
//! The driver crates ask their server and build a [`Capacity`]; the pool only
//! warns (total connections = application instances × `max_size`), never
//! fails.

/// How many connections the server accepts, compared with one pool's
/// `max_size`.
///
/// ```
/// use pool_core::capacity::Capacity;
///
/// let c = Capacity::new(100, 3, 60, 0.5);
/// assert_eq!(c.available, 97);
/// assert!(c.exceeds_share()); // 60 > 50 % of 97
/// assert_eq!(c.instances_that_fit(), 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Capacity {
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// Connections ordinary users cannot use (PostgreSQL's
    /// `superuser_reserved_connections` plus `reserved_connections`; 0 for
    /// MySQL and MariaDB, whose administrator connection comes on top).
    pub reserved: u32,
    /// Connections open to ordinary users: `max_connections - reserved`.
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

    /// The warning logged when [`exceeds_share`](Capacity::exceeds_share):
    /// `server` says which server ("PostgreSQL server"), `tool` names the
    /// command-line client operators would be left without ("psql").
    pub fn warning(&self, pool: &str, server: &str, tool: &str) -> String {
        format!(
            "pool \"{pool}\": max_size {} is more than {:.0}% of the {} connections the \
             {server} accepts for ordinary users (max_connections {} minus {} \
             reserved). Every process running this pool opens up to max_size connections \
             (total = instances × max_size), so only {} instance(s) fit, with nothing left \
             for deployments, migrations or {tool}. Lower max_size (a pool rarely needs more \
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_and_fit() {
        let c = Capacity::new(100, 3, 48, 0.5);
        assert!(!c.exceeds_share());
        assert_eq!(c.instances_that_fit(), 2);
        let c = Capacity::new(100, 3, 49, 0.5);
        assert!(c.exceeds_share());
        let w = c.warning("orders", "PostgreSQL server", "psql");
        assert!(
            w.starts_with("pool \"orders\": max_size 49 is more than 50% of the 97"),
            "{w}"
        );
        assert!(w.contains("PostgreSQL server accepts"), "{w}");
        assert!(w.contains("instances × max_size"), "{w}");
        assert!(w.contains("migrations or psql"), "{w}");
    }

    #[test]
    fn degenerate_values() {
        let c = Capacity::new(3, 5, 0, 0.5);
        assert_eq!(c.available, 0);
        assert_eq!(c.instances_that_fit(), 0);
        assert!(!c.exceeds_share());
    }
}
