//! The manager wrapper of the real backends: [`TrackingManager`] passes every
//! call on to pool-postgres's or pool-mysql's manager and keeps a [`Ledger`]
//! of the connections it opened and closed, by their server ids.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pool_core::ManageConnection;

use super::Dialect;

/// What the [`TrackingManager`] saw: connections opened and closed, and
/// the outcome of every manager call.
#[derive(Default)]
pub(in crate::stress) struct Ledger {
    /// Server restarts so far: the high half of every connection id.
    pub(super) epoch: AtomicU64,
    pub(super) book: parking_lot::Mutex<Book>,
    pub(super) connect_attempts: AtomicU64,
    pub(super) connect_failures: AtomicU64,
    pub(super) validations: AtomicU64,
    pub(super) validation_failures: AtomicU64,
    pub(super) resets: AtomicU64,
    pub(super) reset_failures: AtomicU64,
}

/// The ledger's record of connections.
#[derive(Default)]
pub(in crate::stress) struct Book {
    /// Ids of the connections open now (a count, in case a server reuses
    /// the id of a session the pool has not closed yet).
    pub(super) live: HashMap<u64, u32>,
    pub(super) live_count: usize,
    pub(super) peak_live: usize,
    /// Ids of connections the pool has closed.
    pub(super) closed: HashSet<u64>,
    pub(super) opened: u64,
    pub(super) closed_count: u64,
    /// Closes of a connection that was not open: never expected.
    pub(super) closed_unknown: u64,
}

impl Ledger {
    pub(in crate::stress) fn opened(&self, id: u64) {
        let mut book = self.book.lock();
        *book.live.entry(id).or_insert(0) += 1;
        book.closed.remove(&id);
        book.opened += 1;
        book.live_count += 1;
        book.peak_live = book.peak_live.max(book.live_count);
    }

    pub(in crate::stress) fn closed(&self, id: u64) {
        let mut book = self.book.lock();
        match book.live.get_mut(&id) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                book.live.remove(&id);
            }
            None => {
                book.closed_unknown += 1;
                return;
            }
        }
        book.closed.insert(id);
        book.closed_count += 1;
        book.live_count -= 1;
    }

    /// The id of server session `server_id` in the current generation.
    pub(in crate::stress) fn id_now(&self, server_id: u32) -> u64 {
        (self.epoch.load(Ordering::SeqCst) << 32) | u64::from(server_id)
    }
}

/// What every connection of a run shares: the ledger and the workload's
/// scratch table.
pub(in crate::stress) struct Ctx {
    pub(super) ledger: Ledger,
    /// The scratch table the transactions insert into.
    pub(super) table: String,
    /// Whether the session check can ask the server if a transaction is
    /// open (MariaDB's `@@in_transaction`; MySQL has no such variable).
    pub(super) check_trx: bool,
}

/// A pool connection of a real backend: the driver's connection and its
/// id on the server, found once when it was opened.
pub(in crate::stress) struct Tracked<C> {
    /// Present until the pool closes it.
    pub(super) conn: Option<C>,
    pub(super) id: u64,
    pub(super) ctx: Arc<Ctx>,
}

impl<C> Tracked<C> {
    pub(in crate::stress) fn parts(&mut self) -> (&mut C, &Ctx) {
        match self.conn.as_mut() {
            Some(c) => (c, &self.ctx),
            None => unreachable!("a tracked connection is present until closed"),
        }
    }
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        // Dropped without `close` (the pool never does that today).
        if let Some(conn) = self.conn.take() {
            drop(conn);
            self.ctx.ledger.closed(self.id);
        }
    }
}

/// An error of a [`TrackingManager`].
#[derive(Debug)]
pub(in crate::stress) enum TrackError<E> {
    /// The wrapped manager's error.
    Driver(E),
    /// The connection opened, but its server id could not be read.
    Ident(String),
    /// The connection was already closed (never expected).
    Gone,
}

impl<E: fmt::Display> fmt::Display for TrackError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackError::Driver(e) => e.fmt(f),
            TrackError::Ident(e) => write!(f, "cannot read the connection's server id: {e}"),
            TrackError::Gone => f.write_str("the connection was already closed"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for TrackError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrackError::Driver(e) => Some(e),
            _ => None,
        }
    }
}

/// Wraps pool-postgres's or pool-mysql's manager: every call goes to it
/// unchanged, and the connection's server id and the outcome of each
/// call are recorded in the run's [`Ledger`].
pub(in crate::stress) struct TrackingManager<D: Dialect> {
    pub(super) inner: D::Inner,
    pub(super) ctx: Arc<Ctx>,
}

impl<D: Dialect> Clone for TrackingManager<D> {
    fn clone(&self) -> Self {
        TrackingManager {
            inner: self.inner.clone(),
            ctx: self.ctx.clone(),
        }
    }
}

/// The driver connection of dialect `D`.
pub(in crate::stress) type Raw<D> = <<D as Dialect>::Inner as ManageConnection>::Connection;
pub(in crate::stress) type DriverError<D> = <<D as Dialect>::Inner as ManageConnection>::Error;

impl<D: Dialect> ManageConnection for TrackingManager<D> {
    type Connection = Tracked<Raw<D>>;
    type Error = TrackError<DriverError<D>>;

    fn connect(&self) -> std::result::Result<Self::Connection, Self::Error> {
        let ledger = &self.ctx.ledger;
        ledger.connect_attempts.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.inner.connect().map_err(|e| {
            ledger.connect_failures.fetch_add(1, Ordering::Relaxed);
            TrackError::Driver(e)
        })?;
        match D::server_id(&mut conn) {
            Ok(server_id) => {
                let id = ledger.id_now(server_id);
                ledger.opened(id);
                Ok(Tracked {
                    conn: Some(conn),
                    id,
                    ctx: self.ctx.clone(),
                })
            }
            Err(e) => {
                ledger.connect_failures.fetch_add(1, Ordering::Relaxed);
                self.inner.close(conn);
                Err(TrackError::Ident(e))
            }
        }
    }

    fn is_valid(
        &self,
        conn: &mut Self::Connection,
        timeout: Duration,
    ) -> std::result::Result<(), Self::Error> {
        let ledger = &self.ctx.ledger;
        ledger.validations.fetch_add(1, Ordering::Relaxed);
        let Some(raw) = conn.conn.as_mut() else {
            return Err(TrackError::Gone);
        };
        self.inner.is_valid(raw, timeout).map_err(|e| {
            ledger.validation_failures.fetch_add(1, Ordering::Relaxed);
            TrackError::Driver(e)
        })
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        conn.conn
            .as_mut()
            .is_none_or(|raw| self.inner.has_broken(raw))
    }

    fn reset(&self, conn: &mut Self::Connection) -> std::result::Result<(), Self::Error> {
        let ledger = &self.ctx.ledger;
        ledger.resets.fetch_add(1, Ordering::Relaxed);
        let Some(raw) = conn.conn.as_mut() else {
            return Err(TrackError::Gone);
        };
        self.inner.reset(raw).map_err(|e| {
            ledger.reset_failures.fetch_add(1, Ordering::Relaxed);
            TrackError::Driver(e)
        })
    }

    fn close(&self, mut conn: Self::Connection) {
        if let Some(raw) = conn.conn.take() {
            self.inner.close(raw);
            self.ctx.ledger.closed(conn.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_counts_opens_and_closes() {
        let ledger = Ledger::default();
        ledger.opened(ledger.id_now(7));
        ledger.opened(ledger.id_now(8));
        ledger.closed(7);
        // A close of a connection that is not open is never expected.
        ledger.closed(7);
        let book = ledger.book.lock();
        assert_eq!(
            (book.opened, book.closed_count, book.closed_unknown),
            (2, 1, 1)
        );
        assert_eq!((book.live_count, book.peak_live), (1, 2));
        assert!(book.closed.contains(&7) && book.live.contains_key(&8));
    }

    #[test]
    fn ids_after_a_restart_are_a_new_generation() {
        let ledger = Ledger::default();
        let before = ledger.id_now(42);
        ledger.epoch.fetch_add(1, Ordering::SeqCst);
        let after = ledger.id_now(42);
        assert_ne!(before, after);
        assert_eq!(crate::stress::backend::show_id(before), "42");
        assert_eq!(crate::stress::backend::show_id(after), "1:42");
    }

    #[test]
    fn a_reused_id_is_open_again() {
        let ledger = Ledger::default();
        ledger.opened(5);
        ledger.closed(5);
        ledger.opened(5);
        let book = ledger.book.lock();
        assert!(book.live.contains_key(&5) && !book.closed.contains(&5));
    }
}
