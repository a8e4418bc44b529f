//! What the pool tells its user about one connection: [`ConnectionInfo`]
//! (a snapshot of its seat's stamps, for [`Pool::retain`](crate::Pool::retain)
//! and the hooks) and [`HookContext`] (what a checkout or checkin hook sees
//! besides the connection: the facts, and the connection's [`Extensions`]).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::clock::Millis;
use crate::extensions::Extensions;
use crate::stamps::Stamps;

/// Facts about one pooled connection, read from its seat.
///
/// Times come from the pool's coarse clock: they are exact to a few
/// milliseconds (one kernel tick).
///
/// ```
/// use pool_core::{ManageConnection, Pool};
/// # use std::time::Duration;
/// # struct M;
/// # impl ManageConnection for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut ()) -> bool { false }
/// # }
/// let pool = Pool::builder().max_size(1).build(M)?;
/// drop(pool.get()?);
/// let mut seen = Vec::new();
/// pool.retain(|info| {
///     seen.push((info.id, info.uses, info.lent));
///     true // keep it
/// });
/// assert_eq!(seen, [(1, 1, false)]);
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection's id, unique within its pool (as in the pool's logs
    /// and [`PooledConnection::id`](crate::PooledConnection::id)); ids grow
    /// in the order connections are opened.
    pub id: u64,
    /// How long ago it was opened.
    pub age: Duration,
    /// How many times it has been lent (a loan under way included).
    pub uses: u64,
    /// How long ago it last came back to the pool (or was opened, if it
    /// never did).
    pub since_used: Duration,
    /// False when it was idle in the pool when read; true when it was lent,
    /// being given back, or held by the pool's own work (a keepalive
    /// check).
    pub lent: bool,
}

impl ConnectionInfo {
    /// A snapshot of a seat's stamps at coarse time `now`.
    pub(crate) fn read(stamps: &Stamps, now: Millis, lent: bool) -> Self {
        let ms = |t: &crate::sync::AtomicU64| {
            Duration::from_millis(now.saturating_sub(t.load(Ordering::Relaxed)))
        };
        ConnectionInfo {
            id: stamps.id.load(Ordering::Relaxed),
            age: ms(&stamps.created),
            uses: stamps.uses.load(Ordering::Relaxed),
            since_used: ms(&stamps.last_used),
            lent,
        }
    }

    /// When it was opened, on the `Instant` clock (`now - age`): compare it
    /// with an `Instant` you took, for example when a failover happened.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::{Duration, Instant};
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(1).build(M)?;
    /// pool.retain(|info| {
    ///     assert!(info.opened_at() <= Instant::now());
    ///     true
    /// });
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn opened_at(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.age).unwrap_or(now)
    }
}

/// What a checkout or checkin hook sees besides the connection: facts about
/// it, and its [`Extensions`] (see
/// [`ManageConnection::on_checkout`](crate::ManageConnection::on_checkout)).
pub struct HookContext<'a> {
    stamps: &'a Stamps,
    extensions: &'a mut Extensions,
    now: Millis,
}

impl<'a> HookContext<'a> {
    pub(crate) fn new(stamps: &'a Stamps, extensions: &'a mut Extensions, now: Millis) -> Self {
        HookContext {
            stamps,
            extensions,
            now,
        }
    }

    /// The connection's id (as in [`ConnectionInfo::id`]).
    pub fn id(&self) -> u64 {
        self.stamps.id.load(Ordering::Relaxed)
    }

    /// Facts about the connection ([`ConnectionInfo::lent`] is true: it is
    /// being lent, or coming back from a loan).
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo::read(self.stamps, self.now, true)
    }

    /// The connection's data.
    pub fn extensions(&self) -> &Extensions {
        self.extensions
    }

    /// The connection's data, mutably.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        self.extensions
    }
}

impl std::fmt::Debug for HookContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookContext")
            .field("info", &self.info())
            .field("extensions", &self.extensions)
            .finish()
    }
}
