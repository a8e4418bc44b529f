//! Runs any [`r2d2::ManageConnection`] in this pool (feature `r2d2`).
//!
//! Existing managers — `r2d2_sqlite`, diesel's `ConnectionManager`,
//! `r2d2_redis`, your own — work unchanged: wrap them in [`R2d2Manager`].
//!
//! ```
//! use pool_core::{r2d2::R2d2Manager, Pool};
//!
//! # #[derive(Debug)] struct Manager;
//! # impl r2d2::ManageConnection for Manager {
//! #     type Connection = u32;
//! #     type Error = std::io::Error;
//! #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(1) }
//! #     fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> { Ok(()) }
//! #     fn has_broken(&self, _: &mut u32) -> bool { false }
//! # }
//! let pool = Pool::builder().max_size(2).build(R2d2Manager::new(Manager))?;
//! assert_eq!(*pool.get()?, 1);
//! # Ok::<(), pool_core::Error>(())
//! ```
//!
//! One difference to know: r2d2's `is_valid` takes no timeout, so the
//! [`validation_timeout`](crate::Builder::validation_timeout) cannot be
//! enforced through it. Set a read timeout on the connection in the manager
//! where the driver allows it, or prefer a native [`ManageConnection`].

use std::time::Duration;

use crate::ManageConnection;

/// Adapts an r2d2 manager to [`ManageConnection`].
#[derive(Debug, Clone, Default)]
pub struct R2d2Manager<M>(M);

impl<M> R2d2Manager<M> {
    /// Wraps `manager`.
    pub fn new(manager: M) -> Self {
        R2d2Manager(manager)
    }

    /// The wrapped r2d2 manager.
    pub fn inner(&self) -> &M {
        &self.0
    }
}

impl<M> ManageConnection for R2d2Manager<M>
where
    M: r2d2::ManageConnection,
    M::Error: Send + Sync,
{
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> Result<M::Connection, M::Error> {
        self.0.connect()
    }

    /// Calls r2d2's `is_valid`, which cannot honour `timeout` (see the module
    /// docs).
    fn is_valid(&self, conn: &mut M::Connection, _timeout: Duration) -> Result<(), M::Error> {
        self.0.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        self.0.has_broken(conn)
    }
}
