//! Minimal pool-core managers over the raw drivers, doing exactly the work
//! the r2d2 managers do (no session reset on return), so that the real-database
//! benchmarks compare pools, not managers.
//!
//! The full managers of `pool-postgres` and `pool-mysql` (which reset the
//! session when a used connection comes back) are benchmarked next to these.
//! [`MinimalMysqlManager`] is not `pool_mysql::MysqlManager`: it is the
//! baseline that does what `r2d2_mysql` does.

use std::time::Duration;

/// pool-core over `postgres::Client`, like `r2d2_postgres`: `is_valid` sends
/// an empty query, `has_broken` looks at the client's closed flag, nothing is
/// reset on return.
#[derive(Debug, Clone)]
pub struct PgManager {
    config: postgres::Config,
}

impl PgManager {
    /// A manager connecting with `url` (`postgres://…`), without TLS.
    pub fn new(url: &str) -> Result<Self, postgres::Error> {
        Ok(PgManager {
            config: url.parse()?,
        })
    }
}

impl pool_core::ManageConnection for PgManager {
    type Connection = postgres::Client;
    type Error = postgres::Error;

    fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(postgres::NoTls)
    }
    fn is_valid(
        &self,
        conn: &mut postgres::Client,
        timeout: Duration,
    ) -> Result<(), postgres::Error> {
        conn.is_valid(timeout)
    }
    fn has_broken(&self, conn: &mut postgres::Client) -> bool {
        conn.is_closed()
    }
}

/// pool-core over `mysql::Conn`, like `r2d2_mysql` minus its `has_broken`,
/// which pings (a round trip on every return): `is_valid` pings, `has_broken`
/// is `false` (the driver keeps no cheap "broken" flag), nothing is reset on
/// return.
#[derive(Debug, Clone)]
pub struct MinimalMysqlManager {
    opts: mysql::Opts,
}

impl MinimalMysqlManager {
    /// A manager connecting with `url` (`mysql://…`).
    pub fn new(url: &str) -> Result<Self, mysql::UrlError> {
        Ok(MinimalMysqlManager {
            opts: mysql::Opts::from_url(url)?,
        })
    }
}

impl pool_core::ManageConnection for MinimalMysqlManager {
    type Connection = mysql::Conn;
    type Error = mysql::Error;

    fn connect(&self) -> Result<mysql::Conn, mysql::Error> {
        mysql::Conn::new(self.opts.clone())
    }
    fn is_valid(&self, conn: &mut mysql::Conn, _timeout: Duration) -> Result<(), mysql::Error> {
        conn.ping()
    }
    fn has_broken(&self, _conn: &mut mysql::Conn) -> bool {
        false
    }
}
