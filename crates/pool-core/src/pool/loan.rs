//! [`PooledConnection`]: a loan of one seat, two words wide, that gives its
//! connection back (or closes it) when dropped.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::clock::{self};
use crate::extensions::Extensions;
use crate::observe::metrics::PoolCounters;
use crate::stamps::{Claimed, Seat, FLAG_BORROWER_CLOSED};
use crate::types::CloseReason;
use crate::ManageConnection;

use super::shared::Inner;

/// A connection borrowed from a [`Pool`](crate::Pool); returned to it when dropped.
///
/// Derefs to the connection. On return the pool checks
/// [`has_broken`](ManageConnection::has_broken) and runs
/// [`reset`](ManageConnection::reset). A connection dropped while its thread
/// is panicking is closed, never lent again: its state is unknown.
///
/// The lifetime `'a` is that of the `Pool` handle it came from
/// ([`Pool::get`](crate::Pool::get)); loans from [`Pool::get_owned`](crate::Pool::get_owned) (or turned by
/// [`into_owned`](PooledConnection::into_owned)) are `'static`.
///
/// Two words: a loan is returned from `get` in registers, not through memory.
pub struct PooledConnection<'a, M: ManageConnection> {
    /// The pool: borrowed for `'a` (from a `Pool` handle, which holds a
    /// reference), or, with `LOAN_OWNED`, one strong count of its `Arc`
    /// that this loan holds itself (`Arc::into_raw`).
    pool: NonNull<Inner<M>>,
    /// The seat's address, with the `LOAN_*` bits in its low bits. The seat
    /// is owned (`IN_USE`) for as long as this value lives, and stays valid
    /// because seats are freed only with the bag, which `pool` keeps alive.
    seat: NonNull<Seat<M::Connection>>,
    _pool: PhantomData<&'a Inner<M>>,
}

/// A loan that holds its own reference to the pool: what r2d2 calls
/// `PooledConnection<M>`. It can be stored in a struct, returned from any
/// function and sent to another thread; [`Pool::get_owned`](crate::Pool::get_owned)
/// and [`PooledConnection::into_owned`] give one.
///
/// ```
/// use pool_core::{ManageConnection, OwnedConnection, Pool};
/// use std::time::Duration;
/// # struct M;
/// # impl ManageConnection for M {
/// #     type Connection = u32;
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
/// #     fn is_valid(&self, _: &mut u32, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut u32) -> bool { false }
/// # }
///
/// type Conn = OwnedConnection<M>; // r2d2: `type Conn = PooledConnection<M>;`
///
/// let pool = Pool::builder().max_size(1).build(M)?;
/// let (tx, rx) = std::sync::mpsc::channel::<Conn>();
/// tx.send(pool.get_owned()?).unwrap();
/// let conn = std::thread::spawn(move || *rx.recv().unwrap()).join().unwrap();
/// assert_eq!(conn, 7);
/// # Ok::<(), pool_core::Error>(())
/// ```
pub type OwnedConnection<M> = PooledConnection<'static, M>;

/// Loan bit: `pool` is a strong count held by the loan (`'static` loans).
const LOAN_OWNED: usize = 1;
/// Loan bit: close the connection when dropped (`mark_broken`).
const LOAN_CLOSE: usize = 2;
/// Loan bit: `detach` already freed the seat; dropping does nothing more.
const LOAN_DETACHED: usize = 4;
/// All the loan bits.
const LOAN_BITS: usize = LOAN_OWNED | LOAN_CLOSE | LOAN_DETACHED;
// A seat's address has its low bits zero: they can carry the loan bits.
const _: () = assert!(std::mem::align_of::<Seat<()>>() > LOAN_BITS);

// SAFETY: a PooledConnection owns its seat exclusively (IN_USE) and gives
// access only to the connection inside, which is `Send`; moving it to another
// thread moves that exclusive ownership.
unsafe impl<M: ManageConnection> Send for PooledConnection<'_, M> {}
// SAFETY: `&PooledConnection` only gives `&M::Connection` (Deref), which is
// shareable when the connection is `Sync`.
unsafe impl<M: ManageConnection> Sync for PooledConnection<'_, M> where M::Connection: Sync {}

impl<'a, M: ManageConnection> PooledConnection<'a, M> {
    /// A loan of a claimed seat that borrows `pool`: the guard becomes the
    /// loan's raw seat pointer, and the loan owns the seat until it ends.
    #[inline]
    pub(super) fn new(pool: &'a Inner<M>, claimed: Claimed<'_, M::Connection>) -> Self {
        PooledConnection {
            pool: NonNull::from(pool),
            seat: NonNull::from(claimed.keep()),
            _pool: PhantomData,
        }
    }

    /// The loan's seat as a guard again, for the code that ends the loan
    /// (`drop`, `detach`), which then gives it up: each calls this once,
    /// as the loan's last use of its seat.
    #[inline]
    fn reclaim(&self) -> Claimed<'_, M::Connection> {
        // SAFETY: the loan owns its seat (`new` kept the guard of a claimed
        // seat in raw form, and nothing else touches it while the loan
        // lives); the callers end the loan right after, so no second guard
        // for it is ever alive.
        unsafe { Claimed::assume(self.seat()) }
    }

    #[inline]
    fn seat(&self) -> &Seat<M::Connection> {
        let seat = self.seat.as_ptr().map_addr(|a| a & !LOAN_BITS);
        // SAFETY: `seat` is the address `new` took from a `&Seat`, with the
        // loan bits cleared (they were zero in it: see `LOAN_BITS`). The
        // bag (inside the pool, which `self.pool` borrows or holds) never
        // frees a seat while it lives.
        unsafe { &*seat }
    }

    /// The pool.
    #[inline]
    fn inner(&self) -> &Inner<M> {
        // SAFETY: `pool` points to a live `Inner`: borrowed for `'a`, or
        // kept alive by the strong count this loan holds (`LOAN_OWNED`).
        unsafe { self.pool.as_ref() }
    }

    /// The loan bits.
    #[inline]
    fn bits(&self) -> usize {
        self.seat.as_ptr().addr() & LOAN_BITS
    }

    /// Sets loan bits.
    #[inline]
    fn set_bits(&mut self, bits: usize) {
        self.seat = self.seat.map_addr(|a| a | bits);
    }

    /// Turns a loan that borrows its `Pool` handle into one that holds its
    /// own reference to the pool (`'static`), as from
    /// [`Pool::get_owned`](crate::Pool::get_owned). Costs one reference-count increment (and a
    /// decrement when the loan ends).
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool, PooledConnection};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = u32;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
    /// #     fn is_valid(&self, _: &mut u32, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut u32) -> bool { false }
    /// # }
    /// fn checkout() -> PooledConnection<'static, M> {
    ///     let pool = Pool::builder().max_size(1).build(M).unwrap();
    ///     pool.get().unwrap().into_owned() // outlives `pool`
    /// }
    /// assert_eq!(*checkout(), 7);
    /// ```
    pub fn into_owned(self) -> PooledConnection<'static, M> {
        // Not dropped: its seat and (if any) its strong count move over.
        let mut this = std::mem::ManuallyDrop::new(self);
        if this.bits() & LOAN_OWNED == 0 {
            let counted = this
                .inner()
                .me
                .upgrade()
                .expect("a borrowed loan's Pool handle keeps the pool alive");
            // The same `Inner` as the borrow, now with a count of its own
            // (given back by `release_pool`).
            let raw = Arc::into_raw(counted).cast_mut();
            this.pool = NonNull::new(raw).expect("Arc::into_raw is never null");
            this.set_bits(LOAN_OWNED);
        }
        PooledConnection {
            pool: this.pool,
            seat: this.seat,
            _pool: PhantomData,
        }
    }

    /// Marks the connection broken: when dropped it is closed instead of
    /// returned, and the pool opens a replacement. Call it when a query fails
    /// in a way that leaves the connection unusable.
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
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
    /// let mut conn = pool.get()?;
    /// conn.mark_broken();
    /// drop(conn);
    /// assert_eq!(pool.state().total, 0); // closed; a replacement comes shortly
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn mark_broken(&mut self) {
        self.set_bits(LOAN_CLOSE);
    }

    /// Takes the connection out of the pool for good; its place in the pool
    /// is freed (a replacement is opened if the pool needs one).
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = String;
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<String, std::io::Error> { Ok("conn".into()) }
    /// #     fn is_valid(&self, _: &mut String, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut String) -> bool { false }
    /// # }
    /// let pool = Pool::builder().max_size(1).build(M)?;
    /// let conn: String = pool.get()?.detach();
    /// assert_eq!(conn, "conn");
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn detach(mut self) -> M::Connection {
        let inner = self.inner();
        let mut claimed = self.reclaim();
        let conn = claimed.take().expect("a lent seat holds a connection");
        inner.released(inner.local(), &claimed, clock::now());
        PoolCounters::bump(&inner.stats.detached);
        log::debug!(
            "pool \"{}\": connection {} detached",
            inner.name,
            claimed.id.load(Ordering::Relaxed)
        );
        inner.total.fetch_sub(1, Ordering::SeqCst);
        inner.vacate(claimed);
        self.set_bits(LOAN_DETACHED);
        conn
    }

    /// The connection's id, unique within its pool (as in the pool's logs).
    pub fn id(&self) -> u64 {
        self.seat().id.load(Ordering::Relaxed)
    }

    /// The user's data about this connection, kept across loans and
    /// dropped when the connection is closed: see [`Extensions`].
    pub fn extensions(&self) -> &Extensions {
        // SAFETY: the loan owns the seat (IN_USE) for its whole life, and
        // only the owner touches the map (`Stamps::ext_ptr`); `&self` hands
        // out shared references only, and `extensions_mut` needs `&mut self`.
        unsafe { &*self.seat().ext_ptr() }
    }

    /// The user's data about this connection, mutably: see [`Extensions`].
    ///
    /// ```
    /// # use pool_core::{ManageConnection, Pool};
    /// # use std::time::Duration;
    /// # struct M;
    /// # impl ManageConnection for M {
    /// #     type Connection = ();
    /// #     type Error = std::io::Error;
    /// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
    /// #     fn has_broken(&self, _: &mut ()) -> bool { false }
    /// # }
    /// struct Queries(u32);
    /// let pool = Pool::builder().max_size(1).build(M)?;
    /// for _ in 0..3 {
    ///     pool.get()?.extensions_mut().get_or_insert_with(|| Queries(0)).0 += 1;
    /// }
    /// assert_eq!(pool.get()?.extensions().get::<Queries>().unwrap().0, 3);
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        // SAFETY: as in `extensions`, and `&mut self` makes this the only
        // reference to the map handed out.
        unsafe { &mut *self.seat().ext_ptr() }
    }
}

impl<M: ManageConnection> Deref for PooledConnection<'_, M> {
    type Target = M::Connection;

    #[inline]
    fn deref(&self) -> &M::Connection {
        // SAFETY: we own the seat (IN_USE) for our whole life, so nobody else
        // touches the cell; it holds `Some` in every owned state.
        match unsafe { &*self.seat().conn_ptr() } {
            Some(c) => c,
            None => unreachable!("a lent seat holds a connection"),
        }
    }
}

impl<M: ManageConnection> DerefMut for PooledConnection<'_, M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Connection {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference handed out.
        match unsafe { &mut *self.seat().conn_ptr() } {
            Some(c) => c,
            None => unreachable!("a lent seat holds a connection"),
        }
    }
}

impl<M: ManageConnection> Drop for PooledConnection<'_, M> {
    #[inline]
    fn drop(&mut self) {
        let bits = self.bits();
        if bits & (LOAN_CLOSE | LOAN_DETACHED) == 0 && !std::thread::panicking() {
            let now = clock::now();
            let inner = self.inner();
            let local = inner.local();
            let claimed = self.reclaim();
            inner.released(local, &claimed, now);
            inner.check_in(local, claimed, now);
        } else if bits & LOAN_DETACHED == 0 {
            self.close_on_drop();
        }
        if bits & LOAN_OWNED != 0 {
            self.release_pool();
        }
    }
}

impl<M: ManageConnection> PooledConnection<'_, M> {
    /// `drop` of a loan marked broken, or dropped while its thread panics:
    /// its connection is closed, not lent again.
    #[cold]
    #[inline(never)]
    fn close_on_drop(&mut self) {
        let inner = self.inner();
        let claimed = self.reclaim();
        inner.released(inner.local(), &claimed, clock::now());
        claimed
            .flags
            .fetch_or(FLAG_BORROWER_CLOSED, Ordering::Relaxed);
        inner.close_slot(claimed, CloseReason::Broken);
    }

    /// Gives back the strong count of an owned loan (`LOAN_OWNED`), last.
    #[inline(never)]
    fn release_pool(&mut self) {
        // SAFETY: with `LOAN_OWNED`, `pool` came from `Arc::into_raw` (in
        // `into_owned`) and this loan holds that one count; `drop` calls
        // this once, after its last use of the pool.
        drop(unsafe { Arc::from_raw(self.pool.as_ptr().cast_const()) });
    }
}

impl<M: ManageConnection> fmt::Debug for PooledConnection<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.inner().name)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}
