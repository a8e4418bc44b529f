//! Running a blocking driver call with a time limit, for managers.
//!
//! Shared by the driver crates (`pool-postgres`, `pool-mysql`): one small
//! process-wide set of worker threads named `pool-io`.
//!
//! When the driver lends its blocking socket (`mysql::Conn` does, through
//! `AsRawFd`; its manager borrows the descriptor), [`limit_socket_reads`]
//! bounds a call on the calling thread, the way JDBC's `setNetworkTimeout`
//! does: no thread hand-off.
//!
//! Otherwise (the `postgres` crate drives a non-blocking socket it keeps to
//! itself, and no driver bounds a connect beyond the TCP handshake) a call
//! that must be bounded is moved, with
//! the connection it uses, to a worker thread; the caller waits for the
//! result at most the time limit. When the limit passes, the caller gives up
//! on the connection (it reports an error, and the pool closes the
//! connection); the worker finishes whenever the driver call does (when the
//! server answers at last or the TCP connection dies) and then drops the
//! connection.
//!
//! Workers are kept in a small process-wide pool that grows when all are busy
//! (a hung call keeps its worker) and shrinks when they idle, so the common
//! case costs a hand-off to a waiting thread (a few microseconds) rather than
//! a thread start (tens of microseconds).
//!
//! # Watched calls
//!
//! When the pool runs a manager's [`reset`](crate::ManageConnection::reset)
//! on a background thread, nobody waits for that thread, and the pool
//! enforces the manager's [`reset_limit`](crate::ManageConnection::reset_limit)
//! itself: its housekeeper gives the connection up once the limit has passed
//! (the seat is freed and counted closed; the connection is dropped on the
//! background thread whenever the call returns). [`run`] sees that it is
//! *watched* and runs its job on the calling thread, so a background reset
//! costs one hand-off (to the background thread) instead of two.

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long an idle worker waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// Name of the worker threads.
const THREAD_NAME: &str = "pool-io";

/// A unit of work for a worker thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
}

struct Workers {
    state: Mutex<State>,
    wake: Condvar,
}

static WORKERS: Workers = Workers {
    state: Mutex::new(State {
        jobs: VecDeque::new(),
        idle: 0,
    }),
    wake: Condvar::new(),
};

fn lock() -> MutexGuard<'static, State> {
    // Jobs run outside the lock and catch their panics: a poisoned lock can
    // only come from a panic in this module's few lines, which keep the state
    // consistent at every step.
    WORKERS.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a bounded call produced no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// The time limit passed; the call goes on on its worker thread.
    TimedOut,
    /// The call panicked, or no worker thread could be started.
    Failed,
}

thread_local! {
    /// Set while this thread runs a call that the pool watches (see
    /// "Watched calls" in the module docs).
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as a watched call: [`run`] calls on this thread run inline.
/// The caller must give up on the connection concerned after the time limit
/// by itself (the pool's housekeeper does, for background resets).
pub(crate) fn watched<R>(f: impl FnOnce() -> R) -> R {
    /// Clears the flag even if `f` panics.
    struct Unwatch(bool);
    impl Drop for Unwatch {
        fn drop(&mut self) {
            WATCHED.with(|w| w.set(self.0));
        }
    }
    let _unwatch = Unwatch(WATCHED.with(|w| w.replace(true)));
    f()
}

/// Runs `job` on a worker thread and waits at most `timeout` for its result.
///
/// In a call the pool watches (a background reset, see the module docs) the
/// job runs on the calling thread instead, and `Ok` is its result however
/// long it took: the pool has then already given up on the connection if
/// it took too long.
///
/// ```
/// use pool_core::deadline::{run, Missed};
/// use std::time::Duration;
///
/// assert_eq!(run(Duration::from_secs(5), || 6 * 7), Ok(42));
/// let slow = run(Duration::from_millis(10), || std::thread::sleep(Duration::from_secs(1)));
/// assert_eq!(slow, Err(Missed::TimedOut));
/// ```
pub fn run<T, F>(timeout: Duration, job: F) -> Result<T, Missed>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if WATCHED.with(Cell::get) {
        return catch_unwind(AssertUnwindSafe(job)).map_err(|_| Missed::Failed);
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let submitted = submit(Box::new(move || {
        if let Ok(value) = catch_unwind(AssertUnwindSafe(job)) {
            // The caller may have given up: then the value (and the
            // connection in it) is dropped here, on the worker.
            let _ = tx.send(value);
        }
    }));
    if submitted.is_err() {
        return Err(Missed::Failed);
    }
    match rx.recv_timeout(timeout) {
        Ok(value) => Ok(value),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Missed::TimedOut),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Missed::Failed),
    }
}

/// Runs `job` on a worker thread without waiting for it. Gives the job back
/// when no worker thread exists and none can be started.
pub fn detach(job: Job) -> Result<(), Job> {
    // Under loom a detached job is a model thread of its own, so that the
    // models explore it against the pool's other threads.
    #[cfg(pool_loom)]
    {
        loom::thread::spawn(job);
        Ok(())
    }
    #[cfg(not(pool_loom))]
    submit(job)
}

/// Limits how long each read from a blocking socket may wait
/// (`SO_RCVTIMEO`), or lifts the limit (`None`).
///
/// For drivers that lend their socket: a call bounded this way runs on the
/// calling thread, where
/// [`run`] costs a hand-off to a worker thread and another back, each a
/// thread wake-up (a large share of the throughput with a session reset per
/// loan: the pool's docs/performance.md, "Socket read limits").
///
/// What the caller must know:
///
/// * The limit bounds each wait for data, not a whole exchange: arm it with
///   the time left before each step of a multi-step call.
/// * A read that waits longer fails with [`WouldBlock`](std::io::ErrorKind::WouldBlock)
///   (or `TimedOut`), and leaves the driver mid-reply: the connection must
///   then be closed, never used again.
/// * Writes are not limited: the commands a pool sends (a ping, a reset)
///   are a few bytes written to a socket the server has drained.
/// * Only blocking sockets wait in `read`: on a non-blocking one (an async
///   runtime's) the limit has no effect.
/// * Durations below a millisecond are raised to one (the kernel reads
///   zero as "no limit").
///
/// The socket is taken through [`AsFd`](std::os::fd::AsFd), whose borrow
/// keeps the descriptor open for the call. A driver that only hands out a
/// raw descriptor (`mysql::Conn` implements `AsRawFd` alone) is borrowed
/// with [`BorrowedFd::borrow_raw`](std::os::fd::BorrowedFd::borrow_raw) by
/// its caller, which knows who owns the descriptor (`pool-mysql` does).
///
/// ```
/// use std::io::{ErrorKind, Read};
/// use std::net::{TcpListener, TcpStream};
/// use std::time::{Duration, Instant};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let mut socket = TcpStream::connect(listener.local_addr()?)?;
/// // The peer accepted, and never answers.
/// pool_core::deadline::limit_socket_reads(&socket, Some(Duration::from_millis(20)))?;
/// let start = Instant::now();
/// let err = socket.read(&mut [0; 1]).unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
/// assert!(start.elapsed() >= Duration::from_millis(15));
///
/// pool_core::deadline::limit_socket_reads(&socket, None)?;
/// assert_eq!(socket.read_timeout()?, None);
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(unix)]
pub fn limit_socket_reads<S: std::os::fd::AsFd + ?Sized>(
    socket: &S,
    limit: Option<Duration>,
) -> std::io::Result<()> {
    use rustix::net::sockopt::{set_socket_timeout, Timeout};
    let limit = limit.map(|l| l.max(Duration::from_millis(1)));
    set_socket_timeout(socket.as_fd(), Timeout::Recv, limit)?;
    Ok(())
}

fn submit(job: Job) -> Result<(), Job> {
    let mut state = lock();
    state.jobs.push_back(job);
    if state.idle >= state.jobs.len() {
        drop(state);
        WORKERS.wake.notify_one();
        return Ok(());
    }
    drop(state);
    let spawned = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(worker);
    if spawned.is_err() {
        // A busy worker may still pick the job up later (the caller's
        // timeout covers that). If no worker is idle, take a job back so
        // that the queue does not grow without bound.
        let mut state = lock();
        if state.idle == 0 {
            if let Some(job) = state.jobs.pop_back() {
                return Err(job);
            }
        }
    }
    Ok(())
}

fn worker() {
    loop {
        let job = {
            let mut state = lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                state.idle += 1;
                let (guard, timeout) = WORKERS
                    .wake
                    .wait_timeout(state, IDLE_EXIT)
                    .unwrap_or_else(|e| e.into_inner());
                state = guard;
                state.idle -= 1;
                if timeout.timed_out() && state.jobs.is_empty() {
                    return;
                }
            }
        };
        // Jobs from `run` catch their own panics; detached ones are caught here.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn returns_the_value() {
        assert_eq!(run(Duration::from_secs(5), || 6 * 7), Ok(42));
    }

    #[test]
    fn gives_up_after_the_timeout() {
        let start = Instant::now();
        let r = run(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_millis(500));
        });
        assert_eq!(r, Err(Missed::TimedOut));
        assert!(start.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn a_watched_call_runs_inline_and_is_not_cut_short() {
        let here = std::thread::current().id();
        let r = watched(|| {
            run(Duration::from_millis(1), move || {
                std::thread::sleep(Duration::from_millis(20));
                std::thread::current().id() == here
            })
        });
        assert_eq!(r, Ok(true));
        assert_eq!(
            watched(|| run(Duration::from_secs(1), || -> () { panic!("boom") })),
            Err(Missed::Failed)
        );
        // Outside the watch, calls hop again (and are cut short).
        let r = run(Duration::from_secs(5), move || {
            std::thread::current().id() == here
        });
        assert_eq!(r, Ok(false));
    }

    #[test]
    fn a_panic_is_a_failure() {
        let r: Result<(), _> = run(Duration::from_secs(5), || panic!("boom"));
        assert_eq!(r, Err(Missed::Failed));
        // The worker survived (or a new one starts).
        assert_eq!(run(Duration::from_secs(5), || 1), Ok(1));
    }

    #[test]
    fn hung_jobs_do_not_block_others() {
        let mut slow = Vec::new();
        for _ in 0..3 {
            slow.push(std::thread::spawn(|| {
                run(Duration::from_millis(20), || {
                    std::thread::sleep(Duration::from_millis(300))
                })
            }));
        }
        let start = Instant::now();
        for i in 0..20 {
            assert_eq!(run(Duration::from_secs(5), move || i), Ok(i));
        }
        assert!(start.elapsed() < Duration::from_millis(250));
        for t in slow {
            let _ = t.join();
        }
    }
}
