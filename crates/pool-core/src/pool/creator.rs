//! The creator thread: it opens every connection, one at a time, and only
//! while one is still needed, so that a burst of borrowers is not a burst of
//! connects; while the pool lacks connections it should hold (start-up fill,
//! refill after connections were lost) and the last connect succeeded, up to
//! `parallel_connects` at once ([`fill_in_parallel`]). Failed connects are
//! retried one at a time with capped exponential backoff and jitter, and
//! logged rate-limited; a connect storm is capped ([`ChurnGuard`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::bag::Handover;
use crate::clock::{self, Millis};
use crate::observe::events::AcquireEvent;
use crate::stamps::{Claimed, FLAG_EVICT};
use crate::types::CloseReason;
use crate::{ConnectFailure, ErrorChain, ManageConnection};

use super::guarded;
use super::shared::Inner;

/// First retry delay after a failed connect.
pub(super) const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest retry delay: a recovered database is noticed within about this.
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// Repeated connect failures are logged at most this often.
pub(super) const FAILURE_LOG_EVERY: Duration = Duration::from_secs(30);
/// Max lifetime is shortened by up to this fraction, at random.
pub(super) const LIFETIME_VARIANCE: f64 = 0.025;
/// While the pool has room and a `min_idle`, the creator looks this often
/// whether borrows took the idle count below `min_idle` (a borrow does not
/// ring it: that would cost the uncontended borrow a scan of every seat).
pub(super) const MIN_IDLE_POLL: Duration = Duration::from_millis(100);

/// A small xorshift generator for jitter: no need for cryptographic quality,
/// nor for a dependency.
pub(super) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(clock::now());
        Jitter(h.finish() | 1)
    }

    /// A number in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A connection closed within this many milliseconds of opening "died
/// young" (see [`ChurnGuard`]).
pub(super) const YOUNG: Millis = 1_000;

/// The pool's own guard against a connect storm, whatever its settings: when
/// at least `max_size` connections died young within the last second, the
/// creator opens at most `2 × max_size + 10` connections a second, and warns
/// (at most every 30 s) naming what closes them.
///
/// Settings that make every connection die at once are rejected by `build`;
/// this catches what settings cannot: a server or network that closes every
/// new session, a manager that reports every connection broken. Connections
/// their borrowers close (`mark_broken`) do not count: that churn is the
/// application's own choice, a connect per loan.
pub(super) struct ChurnGuard {
    /// Start of each connect within the last second, with the pool's
    /// young-close count at that moment.
    starts: std::collections::VecDeque<(Instant, u64)>,
    last_warning: Option<Instant>,
}

impl ChurnGuard {
    fn new() -> Self {
        ChurnGuard {
            starts: std::collections::VecDeque::new(),
            last_warning: None,
        }
    }

    /// How long to wait before the next connect, if the cap applies.
    fn delay<M: ManageConnection>(&mut self, inner: &Inner<M>) -> Option<Duration> {
        const WINDOW: Duration = Duration::from_secs(1);
        let now = Instant::now();
        while self.starts.front().is_some_and(|(t, _)| now - *t >= WINDOW) {
            self.starts.pop_front();
        }
        let max = inner.max_size.load(Ordering::Relaxed);
        let cap = 2 * max + 10;
        let &(oldest, young_then) = self.starts.front()?;
        let young = inner.young_closes.load(Ordering::Relaxed);
        if self.starts.len() < cap || young - young_then < max as u64 {
            return None;
        }
        if self
            .last_warning
            .is_none_or(|t| now - t >= FAILURE_LOG_EVERY)
        {
            self.last_warning = Some(now);
            let reason = CloseReason::from_index(inner.young_reason.load(Ordering::Relaxed).into());
            let why = match reason {
                Some(CloseReason::IdleTimeout) => {
                    "idle_timeout is shorter than the time between borrows"
                }
                Some(CloseReason::MaxLifetime) => "max_lifetime is too short",
                Some(CloseReason::Broken) => {
                    "the database or the network breaks every new connection"
                }
                Some(CloseReason::FailedValidation) => {
                    "every new connection fails its validation (validation_timeout, \
                      keepalive_time, or the database)"
                }
                Some(CloseReason::ResetFailed) => "every session reset fails",
                _ => "connections are evicted as soon as they open",
            };
            log::warn!(
                "pool \"{}\": {} connections closed within a second of opening ({why}); \
                 connects are capped at {cap} a second",
                inner.name,
                young - young_then
            );
        }
        Some(WINDOW - (now - oldest))
    }

    /// Records the start of a connect.
    fn started<M: ManageConnection>(&mut self, inner: &Inner<M>) {
        let young = inner.young_closes.load(Ordering::Relaxed);
        self.starts.push_back((Instant::now(), young));
    }
}

/// The creator thread's main loop.
pub(super) fn creator<M: ManageConnection>(weak: Weak<Inner<M>>, bell: Receiver<()>) {
    let mut churn = ChurnGuard::new();
    let mut jitter = Jitter::new();
    let mut retry_at: Option<Instant> = None;
    let mut last_failure_log: Option<Instant> = None;
    // Parallel connects only after a success: a database that is down (or
    // not known to be up) sees one attempt at a time.
    let mut last_ok = false;
    loop {
        let sleep = {
            let Some(inner) = weak.upgrade() else { return };
            if inner.is_closed() {
                return;
            }
            if !should_create(&inner) {
                (inner.occupied() < inner.max_size.load(Ordering::SeqCst)
                    && inner.min_idle.load(Ordering::Relaxed) > 0)
                    .then_some(MIN_IDLE_POLL)
            } else {
                match retry_at.and_then(|t| t.checked_duration_since(Instant::now())) {
                    Some(wait) if !wait.is_zero() => Some(wait),
                    _ if let Some(wait) = churn.delay(&inner) => Some(wait),
                    _ => {
                        let parallel = if last_ok { fill_width(&inner) } else { 1 };
                        let failed = if parallel > 1 {
                            fill_in_parallel(&inner, parallel, &mut churn, &mut last_failure_log)
                        } else {
                            churn.started(&inner);
                            create_one(&inner, &mut jitter, &mut last_failure_log)
                        };
                        last_ok = failed.is_none();
                        retry_at = failed.map(|delay| Instant::now() + delay);
                        continue;
                    }
                }
            }
        };
        let woke = match sleep {
            Some(d) => bell.recv_timeout(d),
            None => bell.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        if woke == Err(RecvTimeoutError::Disconnected) {
            return;
        }
    }
}

/// Whether the pool wants one more connection right now.
///
/// Waiters count as demand only beyond the idle connections already there
/// for them: a connection the creator published goes idle and wakes the
/// oldest waiter, which stays registered until it has claimed it; counting
/// it then would open connection after connection for one slow-waking
/// waiter (seen under ThreadSanitizer's slowdown: five connections for one
/// borrower, `peer_hikari::evicted_connection_leaves_the_pool`).
pub(super) fn should_create<M: ManageConnection>(inner: &Inner<M>) -> bool {
    let total = inner.total.load(Ordering::SeqCst);
    let waiting = inner.bag.waiting();
    inner.occupied() < inner.max_size.load(Ordering::SeqCst)
        && ((waiting > 0 && waiting > inner.idle_count())
            || inner.wanted.load(Ordering::SeqCst)
            || total < inner.init_target.load(Ordering::Relaxed)
            || inner.idle_count() < inner.min_idle.load(Ordering::Relaxed))
}

/// How many connections the pool lacks of those it should hold (its
/// start-up target, `min_idle`), within its free seats and
/// `parallel_connects`. Lent connections count as held: a burst of borrowers
/// is no shortfall (their returns serve them), only connections that are
/// gone are.
fn fill_width<M: ManageConnection>(inner: &Inner<M>) -> usize {
    let max = inner.max_size.load(Ordering::SeqCst);
    let target = inner
        .init_target
        .load(Ordering::Relaxed)
        .max(inner.min_idle.load(Ordering::Relaxed))
        .min(max);
    let lacking = target.saturating_sub(inner.total.load(Ordering::SeqCst));
    let free = max.saturating_sub(inner.occupied());
    lacking
        .min(free)
        .min(inner.config.parallel_connects as usize)
}

/// Opens connections on up to `width` threads (the creator's own and
/// `width - 1` short-lived ones) while [`fill_width`] says more are
/// missing than are being opened. Every connect claims its vacant seat first
/// ([`create_one`]), so the seats bound the sessions as for one connect. The
/// first failure, or the first thread to find nothing left to open, stops
/// every thread from starting another connect; after a failure the creator
/// goes back to one attempt at a time. Returns the backoff of a
/// failure, as [`create_one`] does.
pub(super) fn fill_in_parallel<M: ManageConnection>(
    inner: &Arc<Inner<M>>,
    width: usize,
    churn: &mut ChurnGuard,
    last_failure_log: &mut Option<Instant>,
) -> Option<Duration> {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    struct Shared<'a> {
        in_flight: AtomicUsize,
        stop: AtomicBool,
        churn: parking_lot::Mutex<&'a mut ChurnGuard>,
        failed: parking_lot::Mutex<Option<Duration>>,
        log: parking_lot::Mutex<Option<Instant>>,
    }
    let shared = Shared {
        in_flight: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        churn: parking_lot::Mutex::new(churn),
        failed: parking_lot::Mutex::new(None),
        log: parking_lot::Mutex::new(*last_failure_log),
    };
    let worker = |shared: &Shared<'_>| {
        let mut jitter = Jitter::new();
        loop {
            if inner.is_closed() || shared.stop.load(Ordering::SeqCst) {
                return;
            }
            // One more connect only while more are missing than in flight.
            let mut n = shared.in_flight.load(Ordering::SeqCst);
            loop {
                // `fill_width` counts published connections, not these.
                // Once it is reached, every thread stops: more work found
                // later is the creator's next round, with a fresh width.
                if n >= fill_width(inner) {
                    shared.stop.store(true, Ordering::SeqCst);
                    return;
                }
                match shared.in_flight.compare_exchange(
                    n,
                    n + 1,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(now) => n = now,
                }
            }
            {
                let mut churn = shared.churn.lock();
                if churn.delay(inner).is_some() {
                    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                    shared.stop.store(true, Ordering::SeqCst);
                    return;
                }
                churn.started(inner);
            }
            let Some(claimed) = claim_vacant(inner) else {
                // No vacant seat below max_size (surplus seats draining):
                // nothing to open now.
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                shared.stop.store(true, Ordering::SeqCst);
                return;
            };
            let mut log = *shared.log.lock();
            let failed = connect_into(inner, claimed, &mut jitter, &mut log);
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(delay) = failed {
                *shared.log.lock() = log;
                shared.stop.store(true, Ordering::SeqCst);
                let mut first = shared.failed.lock();
                *first = Some(first.map_or(delay, |d| d.max(delay)));
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for i in 1..width {
            let spawned = std::thread::Builder::new()
                .name(format!("{}-connect-{i}", inner.name))
                .spawn_scoped(s, || worker(&shared));
            if spawned.is_err() {
                break; // fewer threads; the creator's own still connects
            }
        }
        worker(&shared);
    });
    *last_failure_log = *shared.log.lock();
    shared.failed.into_inner()
}

/// Opens one connection into a vacant seat. Returns the delay before the next
/// attempt if it failed.
pub(super) fn create_one<M: ManageConnection>(
    inner: &Arc<Inner<M>>,
    jitter: &mut Jitter,
    last_failure_log: &mut Option<Instant>,
) -> Option<Duration> {
    let Some(claimed) = claim_vacant(inner) else {
        // Every seat below max is taken (surplus seats are still draining).
        return None;
    };
    connect_into(inner, claimed, jitter, last_failure_log)
}

/// Claims a vacant seat below `max_size` for a connect, if there is one.
fn claim_vacant<M: ManageConnection>(inner: &Inner<M>) -> Option<Claimed<'_, M::Connection>> {
    let max = inner.max_size.load(Ordering::SeqCst);
    (0..max.min(inner.bag.capacity())).find_map(|i| inner.bag.seat(i).try_claim_vacant())
}

/// Opens one connection into the seat `claimed` (see [`create_one`]).
fn connect_into<'a, M: ManageConnection>(
    inner: &'a Arc<Inner<M>>,
    claimed: Claimed<'a, M::Connection>,
    jitter: &mut Jitter,
    last_failure_log: &mut Option<Instant>,
) -> Option<Duration> {
    // The seat is taken, then the connect reads its settings (credentials):
    // the other half of `soft_evict_all`'s fence, so that a connect it does
    // not mark sees whatever its caller changed first.
    crate::sync::light_fence();
    inner.wanted.store(false, Ordering::SeqCst);
    inner.attempts_begun.fetch_add(1, Ordering::SeqCst);
    let started = Instant::now();
    let (result, claimed) = match inner.manager.connect_limit() {
        None => (guarded(|| inner.manager.connect()), Some(claimed)),
        Some(limit) => match connect_within(inner, claimed, limit) {
            Attempt::Done(result, claimed) => (result, Some(claimed)),
            Attempt::Abandoned => (None, None),
        },
    };
    inner.attempts.fetch_add(1, Ordering::SeqCst);
    let outcome = match (result, claimed) {
        (Some(Ok(conn)), Some(mut claimed)) => {
            let slot = claimed.seat();
            let now = clock::now();
            let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
            let retire_at = match inner.config.max_lifetime {
                Some(life) => {
                    let life = clock::millis(life);
                    let early = (life as f64 * LIFETIME_VARIANCE * jitter.next_f64()) as Millis;
                    clock::after(now, life - early)
                }
                None => clock::NEVER,
            };
            claimed.put(conn);
            slot.id.store(id, Ordering::Relaxed);
            slot.created.store(now, Ordering::Relaxed);
            slot.retire_at.store(retire_at, Ordering::Relaxed);
            slot.last_used.store(now, Ordering::Relaxed);
            slot.checked.store(now, Ordering::Relaxed);
            slot.uses.store(0, Ordering::Relaxed);
            // A seat is vacated with no flags (`Inner::vacate`), so a mark
            // here came from `soft_evict_all` while connecting (it marks
            // every seat that is not vacant): keep it, and `make_available`
            // below closes this connection instead of lending it.
            slot.flags.fetch_and(FLAG_EVICT, Ordering::SeqCst);
            inner.total.fetch_add(1, Ordering::SeqCst);
            inner.stats.created.fetch_add(1, Ordering::Relaxed);
            inner
                .stats
                .creation
                .record_shared(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            let streak = inner.failures.lock().clear();
            if streak > 0 {
                log::info!(
                    "pool \"{}\": connected again after {streak} failed attempt(s)",
                    inner.name
                );
            }
            let took = started.elapsed();
            log::debug!(
                "pool \"{}\": opened connection {id} in {took:?}",
                inner.name
            );
            if let Some(h) = &inner.handler {
                guarded(|| h.handle_acquire(AcquireEvent { id, took }));
            }
            if inner.is_closed() {
                inner.close_slot(claimed, CloseReason::PoolClosed);
            } else {
                inner.make_available(claimed);
            }
            inner.ring_housekeeper();
            None
        }
        (failed, claimed) => {
            let abandoned = claimed.is_none();
            if let Some(claimed) = claimed {
                // Nothing was opened: the seat is free again.
                claimed.flags.store(0, Ordering::Relaxed);
                claimed.vacate();
            }
            let (error, kind): (crate::SharedError, _) = match failed {
                _ if abandoned => {
                    // The seat stays taken until the connect returns
                    // (`Inner::end_abandoned`).
                    let limit = inner.manager.connect_limit().unwrap_or_default();
                    let error: crate::SharedError =
                        match guarded(|| inner.manager.connect_timed_out(limit)).flatten() {
                            Some(e) => Arc::new(e),
                            None => Arc::new(ConnectGivenUp(limit)),
                        };
                    (error, ConnectFailure::Unreachable)
                }
                Some(Err(e)) => {
                    let kind = guarded(|| inner.manager.classify_connect_error(&e))
                        .unwrap_or(ConnectFailure::Other);
                    (Arc::new(e), kind)
                }
                _ => (Arc::new(ConnectPanicked), ConnectFailure::Other),
            };
            inner
                .stats
                .connection_errors
                .fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let (streak, down) = {
                let mut failures = inner.failures.lock();
                failures.record(error.clone(), kind, now);
                (failures.streak, failures.database_down())
            };
            if streak == 1 && inner.init_target.load(Ordering::Relaxed) > 0 {
                // `build` is waiting and reports the error itself (and
                // closes the pool if it gives up).
                log::warn!(
                    "pool \"{}\": cannot connect: {}",
                    inner.name,
                    ErrorChain(&*error)
                );
                *last_failure_log = Some(now);
            } else if streak == 1 {
                log::warn!(
                    "pool \"{}\": cannot connect: {}; retrying in the background",
                    inner.name,
                    ErrorChain(&*error)
                );
                *last_failure_log = Some(now);
            } else if last_failure_log.is_none_or(|t| now - t >= FAILURE_LOG_EVERY) {
                log::warn!(
                    "pool \"{}\": still cannot connect after {streak} attempts: {}",
                    inner.name,
                    ErrorChain(&*error)
                );
                *last_failure_log = Some(now);
            }
            if inner.config.fail_fast && down && inner.total.load(Ordering::SeqCst) == 0 {
                inner.bag.wake_all(false);
            }
            let exp = BACKOFF_BASE.saturating_mul(1 << (streak - 1).min(16) as u32);
            let delay = exp.min(BACKOFF_CAP);
            Some(delay.mul_f64(0.75 + 0.5 * jitter.next_f64()))
        }
    };
    {
        let _guard = inner.status_lock.lock();
        inner.status_cv.notify_all();
    }
    outcome
}

/// The outcome of a connect with a limit.
pub(super) enum Attempt<'a, C, E> {
    /// It returned in time (`None`: it panicked); the creator keeps the seat.
    Done(Option<Result<C, E>>, Claimed<'a, C>),
    /// The limit passed first; the connect goes on, holding its seat.
    Abandoned,
}

/// A bounded connect's race between its result and the creator's limit.
pub(super) const CONNECT_PENDING: u8 = 0;
pub(super) const CONNECT_DONE: u8 = 1;
pub(super) const CONNECT_ABANDONED: u8 = 2;

/// Runs `connect` on a `pool-io` thread for a claimed seat (`RESERVED`)
/// and waits at most `limit` for it. If the limit passes first, the attempt
/// is abandoned: the seat stays taken and counted (`Inner::abandoned`) until
/// the connect returns on its thread, which then closes any connection it
/// brought and frees the seat. One CAS on a shared word decides whether the
/// creator or the late thread owns the result; the creator, which holds the
/// seat meanwhile, sends it to the late thread when that thread wins
/// ([`Claimed::handover`]).
pub(super) fn connect_within<'a, M: ManageConnection>(
    inner: &'a Arc<Inner<M>>,
    claimed: Claimed<'a, M::Connection>,
    limit: Duration,
) -> Attempt<'a, M::Connection, M::Error> {
    use crate::sync::{oneshot, AtomicU8};
    let race = Arc::new(AtomicU8::new(CONNECT_PENDING));
    let (tx, rx) = oneshot::channel();
    // The seat, for the late thread, once the creator has given up.
    let (seat_tx, seat_rx) = oneshot::channel::<Handover>();
    let job = {
        let (inner, race) = (inner.clone(), race.clone());
        Box::new(move || {
            // Watched: the manager's own `deadline::run` runs inline here
            // rather than hop to yet another thread.
            let result = crate::deadline::watched(|| guarded(|| inner.manager.connect()));
            if race
                .compare_exchange(
                    CONNECT_PENDING,
                    CONNECT_DONE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                let _ = tx.send(result); // capacity 1: never blocks
                return;
            }
            // The creator won the race to give up: it sends the seat at
            // once (a few instructions after its CAS). If it could not (it
            // is gone), the seat is lost with it: never the case, since the
            // creator only returns after sending.
            let Ok(handover) = seat_rx.recv() else {
                return;
            };
            let claimed = inner.bag.take_over(handover);
            if let Some(Ok(conn)) = result {
                inner.stats.late_connects.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "pool \"{}\": a connect given up after {limit:?} finished late; its \
                     connection is closed at once",
                    inner.name
                );
                if guarded(|| inner.manager.close(conn)).is_none() {
                    log::warn!(
                        "pool \"{}\": closing a late connection panicked",
                        inner.name
                    );
                }
            }
            inner.end_abandoned(claimed);
        })
    };
    if let Err(job) = crate::deadline::detach(job) {
        job(); // no worker thread: connect here, unbounded
    }
    // A little past the limit: a manager that ends its own connect at the
    // limit (pool-mysql's socket read timeout) reports its own error, which
    // names the server, rather than ours.
    let grace = (limit / 10).clamp(Duration::from_millis(20), Duration::from_millis(500));
    match oneshot::recv_within(&rx, limit + grace) {
        Ok(result) => Attempt::Done(result, claimed),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Attempt::Done(None, claimed),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            // Counted before the CAS, so that the late thread's decrement
            // never comes first.
            inner.abandoned.fetch_add(1, Ordering::SeqCst);
            if race
                .compare_exchange(
                    CONNECT_PENDING,
                    CONNECT_ABANDONED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                // Capacity 1, sent once: never blocks.
                let _ = seat_tx.send(claimed.handover());
                Attempt::Abandoned
            } else {
                inner.abandoned.fetch_sub(1, Ordering::SeqCst);
                Attempt::Done(rx.recv().ok().flatten(), claimed)
            }
        }
    }
}

/// The error recorded for a connect the pool stopped waiting for.
#[derive(Debug)]
pub(super) struct ConnectGivenUp(Duration);

impl std::fmt::Display for ConnectGivenUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the connect did not finish within {:?} (the manager's connect_limit): the \
             database is not answering",
            self.0
        )
    }
}

impl std::error::Error for ConnectGivenUp {}

/// The error recorded when a manager's `connect` panics.
#[derive(Debug)]
pub(super) struct ConnectPanicked;

impl std::fmt::Display for ConnectPanicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection manager panicked in connect()")
    }
}

impl std::error::Error for ConnectPanicked {}
