//! What the pool keeps about each seat's connection besides the connection
//! itself: its id, lifecycle stamps (opened, retire, last used, last
//! checked), the loan's stamps for leak detection, and the pool's flags.
//! The bag carries a [`Stamps`] in every seat without reading it (seats
//! deref to it), so its ownership protocol stays generic over this data.

use std::cell::UnsafeCell;

use crate::sync::{AtomicPtr, AtomicU64, AtomicU8};

use crate::clock;
use crate::extensions::Extensions;

/// Seat flag: close this connection instead of lending it again.
pub(crate) const FLAG_EVICT: u8 = 1;
/// Seat flag: given back by its borrower, the connection is being reset or
/// closed on a `pool-io` thread (the seat is `IN_USE`, but not lent).
pub(crate) const FLAG_RETURNING: u8 = 4;
/// Seat flag: its borrower closed the connection (`mark_broken`, or a
/// panic): not a connection that "died young" for the connect-storm cap.
pub(crate) const FLAG_BORROWER_CLOSED: u8 = 8;

/// The pool's data about one seat's connection.
///
/// Atomics, so that the housekeeper and observers can read the stamps of
/// seats they do not own; written by the seat's owner (the flags by anyone)
/// and read with `Relaxed` ordering, because a stale value only delays a
/// housekeeping decision by one round: the seat's state word, not these,
/// decides who owns the seat.
pub(crate) struct Stamps {
    /// `FLAG_*`; set by anyone, cleared when the seat is vacated (`Inner::vacate`).
    pub(crate) flags: AtomicU8,
    /// The connection's id (unique within the pool), 0 while vacant.
    pub(crate) id: AtomicU64,
    /// Coarse-clock time the connection was opened.
    pub(crate) created: AtomicU64,
    /// Coarse-clock time after which the connection is retired (max lifetime,
    /// already shortened by its random variance).
    pub(crate) retire_at: AtomicU64,
    /// Coarse-clock time the connection last came back (or was opened).
    pub(crate) last_used: AtomicU64,
    /// Coarse-clock time of the last keepalive check.
    pub(crate) checked: AtomicU64,
    /// Coarse-clock time the connection was lent; `NEVER` between loans, so
    /// a seat on its way to a borrower (handed over, not yet stamped) never
    /// looks like an old loan to leak detection. Leak detection sets the top
    /// bit (`leak::REPORTED`) of the stamp of the loan it reported, with one
    /// CAS on the stamp, so the mark can only land on that loan.
    pub(crate) lent_at: AtomicU64,
    /// Where it was borrowed: a `&'static Location` (leak detection).
    pub(crate) site: AtomicPtr<std::panic::Location<'static>>,
    /// Which thread borrowed it: the pool's number for that thread.
    pub(crate) borrower: AtomicU64,
    /// How many times the connection was lent; written by the seat's owner
    /// only (a load and a store, no locked instruction), zeroed when a
    /// connection is published.
    pub(crate) uses: AtomicU64,
    /// The user's data about the connection. Touched only by the seat's
    /// owner (through [`with_conn_and_extensions`] or a loan), emptied when
    /// the seat is vacated; an empty map holds no allocation.
    ext: UnsafeCell<Extensions>,
}

// SAFETY: every field but `ext` is an atomic. `ext` is read and written
// only by the thread that owns the seat (the seat's state word, which a
// `Claimed` guard or a loan proves, decides who that is, and ownership
// passes with Release/Acquire or SeqCst operations on that word), so no two
// threads access it at once; its values are `Send + Sync`.
unsafe impl Sync for Stamps {}

impl Stamps {
    /// The extension map's cell. Only the seat's owner may dereference it
    /// (see the `Sync` impl above).
    #[inline]
    pub(crate) fn ext_ptr(&self) -> *mut Extensions {
        self.ext.get()
    }
}

/// Runs `f` on the connection and the extension map of a seat the caller
/// owns.
#[inline]
pub(crate) fn with_conn_and_extensions<C, R>(
    claimed: &mut Claimed<'_, C>,
    f: impl FnOnce(Option<&mut C>, &mut Extensions) -> R,
) -> R {
    let ext = claimed.seat().ext_ptr();
    claimed.with_conn(|conn| {
        // SAFETY: the guard proves that this thread owns the seat, and
        // `&mut` on it that nothing else uses the guard meanwhile: no other
        // reference to `ext` exists (it is a different cell from the
        // connection's).
        f(conn, unsafe { &mut *ext })
    })
}

/// Takes the extension map out of a seat the caller owns (to drop it when
/// the connection is closed).
pub(crate) fn take_extensions<C>(claimed: &mut Claimed<'_, C>) -> Extensions {
    with_conn_and_extensions(claimed, |_, ext| std::mem::take(ext))
}

impl Default for Stamps {
    fn default() -> Self {
        Stamps {
            flags: AtomicU8::new(0),
            id: AtomicU64::new(0),
            created: AtomicU64::new(0),
            retire_at: AtomicU64::new(0),
            last_used: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            lent_at: AtomicU64::new(clock::NEVER),
            site: AtomicPtr::new(std::ptr::null_mut()),
            borrower: AtomicU64::new(0),
            uses: AtomicU64::new(0),
            ext: UnsafeCell::new(Extensions::new()),
        }
    }
}

/// The pool's seat: a bag seat carrying [`Stamps`].
pub(crate) type Seat<C> = crate::bag::Seat<C, Stamps>;
/// A claimed seat of the pool's bag.
pub(crate) type Claimed<'a, C> = crate::bag::Claimed<'a, C, Stamps>;
/// The housekeeper's side of a given-up watched reset in the pool's bag.
pub(crate) type GivingUp<'a, C> = crate::bag::GivingUp<'a, C, Stamps>;
/// The pool's bag.
pub(crate) type Bag<C> = crate::bag::Bag<C, Stamps>;
/// What ended a wait in the pool's bag.
pub(crate) type WaitOutcome<'a, C> = crate::bag::WaitOutcome<'a, C, Stamps>;
