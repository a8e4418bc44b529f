//! Shared pieces of the benchmarks: trivial managers for pool-core and r2d2,
//! a plain `Mutex<Vec>` + `Condvar` pool as the floor to compare against, a
//! counting allocator, timed multi-threaded loops, minimal real-database
//! managers and the summary plumbing used by `cargo xtask bench`.
//!
//! The benchmarks themselves are in `benches/benches/` and the zero-allocation
//! tests in `benches/tests/`; `benches/RESULTS.md` has the results.
#![warn(missing_docs)]

use std::time::Duration;

pub mod alloc;
pub mod db;
pub mod load;
pub mod report;

/// A no-op connection manager for pool-core: the "connection" is a `u64`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopManager;

impl pool_core::ManageConnection for NoopManager {
    type Connection = u64;
    type Error = std::io::Error;

    fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u64, _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// The same no-op manager for r2d2.
#[derive(Debug, Default, Clone, Copy)]
pub struct R2d2Noop;

impl r2d2::ManageConnection for R2d2Noop {
    type Connection = u64;
    type Error = std::io::Error;

    fn connect(&self) -> Result<u64, std::io::Error> {
        Ok(0)
    }
    fn is_valid(&self, _: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// The simplest correct blocking pool: a vector under a mutex and a condition
/// variable. Fast when uncontended, unfair when contended: the floor.
#[derive(Debug)]
pub struct MutexPool {
    items: parking_lot::Mutex<Vec<u64>>,
    available: parking_lot::Condvar,
}

impl MutexPool {
    /// A pool of `size` connections.
    pub fn new(size: usize) -> Self {
        MutexPool {
            items: parking_lot::Mutex::new((0..size as u64).collect()),
            available: parking_lot::Condvar::new(),
        }
    }

    /// Takes a connection, waiting as long as needed.
    pub fn get(&self) -> MutexPooled<'_> {
        let mut items = self.items.lock();
        loop {
            if let Some(conn) = items.pop() {
                return MutexPooled { pool: self, conn };
            }
            self.available.wait(&mut items);
        }
    }
}

/// A connection borrowed from a [`MutexPool`].
#[derive(Debug)]
pub struct MutexPooled<'a> {
    pool: &'a MutexPool,
    /// The connection.
    pub conn: u64,
}

impl Drop for MutexPooled<'_> {
    fn drop(&mut self) {
        self.pool.items.lock().push(self.conn);
        self.pool.available.notify_one();
    }
}
