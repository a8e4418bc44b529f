//! Hooks for users: an event handler that hears about every connection's
//! life, and a customizer that prepares new connections and sees them off.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::types::CloseReason;
use crate::{ConnectFailure, HookContext, ManageConnection, State};

/// A connection was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcquireEvent {
    /// The connection's id.
    pub id: u64,
    /// How long connecting took.
    pub took: Duration,
}

/// A connection was lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckoutEvent {
    /// The connection's id.
    pub id: u64,
    /// How long the borrower waited (zero for an immediate borrow, which
    /// reads no clock).
    pub wait: Duration,
}

/// A connection came back (or was closed or detached by its borrower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckinEvent {
    /// The connection's id.
    pub id: u64,
    /// How long it was lent (millisecond resolution).
    pub lent_for: Duration,
}

/// A borrower timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutEvent {
    /// How long it waited.
    pub waited: Duration,
    /// The pool's state then.
    pub state: State,
}

/// A connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseEvent {
    /// The connection's id.
    pub id: u64,
    /// How old it was (millisecond resolution).
    pub age: Duration,
    /// Why it was closed.
    pub reason: CloseReason,
}

/// Receives the pool's events; every method defaults to doing nothing.
///
/// Checkout and checkin events are delivered on the borrower's thread, on
/// the hot path: keep handlers short and non-blocking. A handler that
/// panics is ignored.
///
/// ```
/// use pool_core::{CheckoutEvent, HandleEvent, ManageConnection, Pool};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// # use std::time::Duration;
/// # struct M;
/// # impl ManageConnection for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut ()) -> bool { false }
/// # }
///
/// #[derive(Default)]
/// struct CountCheckouts(AtomicU64);
/// impl HandleEvent for CountCheckouts {
///     fn handle_checkout(&self, _: CheckoutEvent) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let counter = Arc::new(CountCheckouts::default());
/// let pool = Pool::builder().max_size(1).event_handler(counter.clone()).build(M)?;
/// drop(pool.get()?);
/// assert_eq!(counter.0.load(Ordering::Relaxed), 1);
/// # Ok::<(), pool_core::Error>(())
/// ```
pub trait HandleEvent: Send + Sync + 'static {
    /// A connection was opened.
    fn handle_acquire(&self, event: AcquireEvent) {
        let _ = event;
    }
    /// A connection was lent.
    fn handle_checkout(&self, event: CheckoutEvent) {
        let _ = event;
    }
    /// A connection came back.
    fn handle_checkin(&self, event: CheckinEvent) {
        let _ = event;
    }
    /// A borrower timed out.
    fn handle_timeout(&self, event: TimeoutEvent) {
        let _ = event;
    }
    /// A connection was closed.
    fn handle_release(&self, event: ReleaseEvent) {
        let _ = event;
    }
}

impl<T: HandleEvent> HandleEvent for Arc<T> {
    fn handle_acquire(&self, event: AcquireEvent) {
        (**self).handle_acquire(event);
    }
    fn handle_checkout(&self, event: CheckoutEvent) {
        (**self).handle_checkout(event);
    }
    fn handle_checkin(&self, event: CheckinEvent) {
        (**self).handle_checkin(event);
    }
    fn handle_timeout(&self, event: TimeoutEvent) {
        (**self).handle_timeout(event);
    }
    fn handle_release(&self, event: ReleaseEvent) {
        (**self).handle_release(event);
    }
}

/// The builder's handle on an event handler.
#[derive(Clone)]
pub(crate) struct Handler(pub(crate) Arc<dyn HandleEvent>);

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandleEvent")
    }
}

/// Prepares each new connection, sees each loan out and back, and sees each
/// connection off: wrap a manager with [`Customized`] to use it.
///
/// `on_acquire` runs on the creator thread right after a connection is
/// opened (set `application_name`, run init SQL); an error there discards
/// the connection and counts as a failed connect. `on_checkout` and
/// `on_checkin` run on every borrow and every return (see
/// [`ManageConnection::on_checkout`] and [`ManageConnection::on_checkin`]:
/// they can veto, and see the connection's [`Extensions`](crate::Extensions)).
/// `on_release` runs just before a connection is closed.
pub trait CustomizeConnection<C, E>: Send + Sync + 'static {
    /// Called once for each new connection.
    fn on_acquire(&self, conn: &mut C) -> Result<(), E> {
        let _ = conn;
        Ok(())
    }
    /// Called on every borrow, after the pool's own checks: `false` vetoes
    /// the loan (the connection is closed and the borrower gets another).
    /// See [`ManageConnection::on_checkout`].
    fn on_checkout(&self, conn: &mut C, cx: &mut HookContext<'_>) -> bool {
        let _ = (conn, cx);
        true
    }
    /// Called on every return, before the reset: `false` closes the
    /// connection instead of reusing it. See [`ManageConnection::on_checkin`].
    fn on_checkin(&self, conn: &mut C, cx: &mut HookContext<'_>) -> bool {
        let _ = (conn, cx);
        true
    }
    /// Called once for each connection the pool closes.
    fn on_release(&self, conn: &mut C) {
        let _ = conn;
    }
}

/// A manager with a [`CustomizeConnection`] around it.
///
/// ```
/// use pool_core::{Customized, CustomizeConnection, ManageConnection, Pool};
/// # use std::time::Duration;
/// # struct M;
/// # impl ManageConnection for M {
/// #     type Connection = Vec<String>;
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<Vec<String>, std::io::Error> { Ok(Vec::new()) }
/// #     fn is_valid(&self, _: &mut Vec<String>, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut Vec<String>) -> bool { false }
/// # }
///
/// struct Init;
/// impl CustomizeConnection<Vec<String>, std::io::Error> for Init {
///     fn on_acquire(&self, conn: &mut Vec<String>) -> Result<(), std::io::Error> {
///         conn.push("SET application_name = 'orders'".into());
///         Ok(())
///     }
/// }
///
/// let pool = Pool::builder().max_size(1).build(Customized::new(M, Init))?;
/// assert_eq!(pool.get()?.len(), 1);
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Customized<M, F> {
    manager: M,
    customizer: F,
}

impl<M, F> Customized<M, F> {
    /// Wraps `manager` with `customizer`.
    pub fn new(manager: M, customizer: F) -> Self {
        Customized {
            manager,
            customizer,
        }
    }

    /// The wrapped manager.
    pub fn manager(&self) -> &M {
        &self.manager
    }
}

impl<M, F> ManageConnection for Customized<M, F>
where
    M: ManageConnection,
    F: CustomizeConnection<M::Connection, M::Error>,
{
    type Connection = M::Connection;
    type Error = M::Error;

    fn connect(&self) -> Result<M::Connection, M::Error> {
        let mut conn = self.manager.connect()?;
        self.customizer.on_acquire(&mut conn)?;
        Ok(conn)
    }

    fn connect_limit(&self) -> Option<Duration> {
        self.manager.connect_limit()
    }

    fn connect_timed_out(&self, limit: Duration) -> Option<M::Error> {
        self.manager.connect_timed_out(limit)
    }

    fn classify_connect_error(&self, error: &M::Error) -> ConnectFailure {
        self.manager.classify_connect_error(error)
    }

    fn is_valid(&self, conn: &mut M::Connection, timeout: Duration) -> Result<(), M::Error> {
        self.manager.is_valid(conn, timeout)
    }

    fn on_checkout(&self, conn: &mut M::Connection, cx: &mut HookContext<'_>) -> bool {
        self.manager.on_checkout(conn, cx) && self.customizer.on_checkout(conn, cx)
    }

    fn on_checkin(&self, conn: &mut M::Connection, cx: &mut HookContext<'_>) -> bool {
        self.manager.on_checkin(conn, cx) && self.customizer.on_checkin(conn, cx)
    }

    fn is_broken_error(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        self.manager.is_broken_error(error)
    }

    fn has_broken(&self, conn: &mut M::Connection) -> bool {
        self.manager.has_broken(conn)
    }

    fn reset(&self, conn: &mut M::Connection) -> Result<(), M::Error> {
        self.manager.reset(conn)
    }

    fn needs_reset(&self, conn: &mut M::Connection) -> bool {
        self.manager.needs_reset(conn)
    }

    fn background_reset(&self) -> bool {
        self.manager.background_reset()
    }

    fn reset_limit(&self) -> Option<Duration> {
        self.manager.reset_limit()
    }

    fn reset_hands_off(&self) -> bool {
        self.manager.reset_hands_off()
    }

    fn close(&self, mut conn: M::Connection) {
        self.customizer.on_release(&mut conn);
        self.manager.close(conn);
    }
}
