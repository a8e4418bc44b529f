//! A real database as a stress [`Backend`]: the monitoring connection that
//! counts the pool's sessions, the chaos (killed backends, restarts, server
//! faults, network faults through the proxy), and the audit after close.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_testkit::{FaultMode, FaultProxy};

use super::faults::{ServerWatch, CAPACITY, FREEZE};
use super::tracking::{Ctx, Raw, Tracked, TrackingManager};
use super::{Dialect, MONITOR_RETRY, SAMPLE_EVERY};
use crate::stress::backend::{Backend, OpError};

/// Chaos events of the real backends.
pub(in crate::stress) const KILL_ALL: &str = "kill all backends";
pub(in crate::stress) const KILL_SOME: &str = "kill some backends";
pub(in crate::stress) const RESTART: &str = "restart server";
pub(in crate::stress) const NET_LATENCY: &str = "net: latency";
pub(in crate::stress) const NET_BLACKHOLE: &str = "net: black hole";
pub(in crate::stress) const NET_RESET: &str = "net: reset";
pub(in crate::stress) const NET_REFUSE: &str = "net: refuse connects";

/// The monitoring connection, reconnected on demand.
pub(in crate::stress) struct Admin<A> {
    pub(super) conn: Option<A>,
    pub(super) last_attempt: Option<Instant>,
}

/// A real database as a stress [`Backend`].
pub(in crate::stress) struct Real<D: Dialect> {
    pub(super) dialect: D,
    pub(super) manager: TrackingManager<D>,
    pub(super) ctx: Arc<Ctx>,
    pub(super) description: String,
    /// Whether the scratch table lives on a server of our own (dropped
    /// with it) rather than one given by `--url` (dropped at the end).
    pub(super) local: bool,
    pub(super) admin: parking_lot::Mutex<Admin<D::Admin>>,
    /// Chaos events still to come in the current cycle.
    pub(super) menu: parking_lot::Mutex<Vec<&'static str>>,
    /// Largest number of pool sessions the server showed at once, also
    /// counting sessions the pool had already closed.
    pub(super) server_peak_raw: AtomicU64,
    /// Most sessions the pool had closed that the server still showed.
    pub(super) server_lagging_max: AtomicU64,
    pub(super) monitor_failures: AtomicU64,
    pub(super) samples: AtomicU64,
    pub(super) killed: AtomicU64,
    pub(super) restarts: AtomicU64,
    pub(super) restart_failures: AtomicU64,
    pub(super) restart_ms_max: AtomicU64,
    /// The pool's `max_size`.
    pub(super) max_size: u32,
    /// Freeze and capacity faults, the server's own session count and
    /// when the database was down (see [`super::faults`]).
    pub(super) watch: ServerWatch,
    // Dropped last, in this order: the proxy, then the server.
    pub(super) proxy: Option<FaultProxy>,
    pub(super) server: Option<parking_lot::Mutex<D::Server>>,
}

impl<D: Dialect> Real<D> {
    /// The pool's sessions on the server now, in the current generation's
    /// ids; None when the server cannot be asked.
    pub(in crate::stress) fn sessions_now(&self) -> Option<Vec<u64>> {
        let mut admin = self.admin.lock();
        if admin.conn.is_none() {
            if admin
                .last_attempt
                .is_some_and(|t| t.elapsed() < MONITOR_RETRY)
            {
                return None;
            }
            admin.last_attempt = Some(Instant::now());
            match self.dialect.connect_admin() {
                Ok(conn) => admin.conn = Some(conn),
                Err(_) => {
                    self.monitor_failures.fetch_add(1, Ordering::Relaxed);
                    self.watch.seen_down();
                    return None;
                }
            }
        }
        let conn = admin.conn.as_mut()?;
        match self.dialect.sessions(conn) {
            Ok(ids) => {
                self.samples.fetch_add(1, Ordering::Relaxed);
                let ledger = &self.ctx.ledger;
                Some(ids.into_iter().map(|id| ledger.id_now(id)).collect())
            }
            Err(_) => {
                admin.conn = None;
                self.monitor_failures.fetch_add(1, Ordering::Relaxed);
                self.watch.seen_down();
                None
            }
        }
    }

    /// Kills all or some of the pool's sessions.
    pub(in crate::stress) fn kill(&self, rng: &mut fastrand::Rng, all: bool) {
        let Some(mut ids) = self.sessions_now() else {
            return;
        };
        if !all {
            rng.shuffle(&mut ids);
            let keep = (ids.len() * rng.usize(25..=50) / 100).max(1);
            ids.truncate(keep);
        }
        let server_ids: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
        let mut admin = self.admin.lock();
        if let Some(conn) = admin.conn.as_mut() {
            match self.dialect.kill(conn, &server_ids) {
                Ok(n) => {
                    self.killed.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => admin.conn = None,
            }
        }
    }

    /// Stops the server and starts it again.
    pub(in crate::stress) fn restart(&self) {
        let Some(server) = &self.server else { return };
        let mut server = server.lock();
        self.watch.down_begins();
        let started = Instant::now();
        if let Err(e) = D::stop(&mut server) {
            eprintln!("stress: chaos: stopping the server failed: {e}");
        }
        // Sessions of the next server are a new generation of ids.
        self.ctx.ledger.epoch.fetch_add(1, Ordering::SeqCst);
        match D::start_again(&mut server) {
            Ok(()) => {
                self.restarts.fetch_add(1, Ordering::Relaxed);
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                self.restart_ms_max.fetch_max(ms, Ordering::Relaxed);
            }
            Err(e) => {
                self.restart_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("stress: chaos: starting the server again failed: {e}");
            }
        }
        self.watch.down_ends();
    }

    /// A freeze or a capacity limit of the throwaway server, for two to
    /// four seconds (see [`super::faults`]).
    pub(in crate::stress) fn server_fault(
        &self,
        event: &str,
        rng: &mut fastrand::Rng,
        stop: &AtomicBool,
    ) {
        let Some(server) = &self.server else { return };
        let server = server.lock();
        let hold = Duration::from_millis(rng.u64(2000..4000));
        let result = if event == FREEZE {
            self.watch.freeze(&*server, hold, stop)
        } else {
            let limit = (self.max_size / 2).max(1);
            self.watch.limit(&*server, limit, hold, stop)
        };
        if let Err(e) = result {
            eprintln!("stress: chaos: {event} failed: {e}");
        }
    }

    /// Puts the proxy back to pass-through; a black hole ends with a
    /// reset of every connection it swallowed.
    pub(in crate::stress) fn heal_network(&self) {
        if let Some(proxy) = &self.proxy {
            if proxy.mode() == FaultMode::Blackhole {
                proxy.set_mode(FaultMode::Reset);
            }
            if proxy.mode() != FaultMode::PassThrough {
                proxy.set_mode(FaultMode::PassThrough);
            }
        }
    }
}

/// Sleeps `d` in small steps, returning early once `stop` is set.
pub(in crate::stress) fn hold(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl<D: Dialect> Backend for Real<D> {
    type Manager = TrackingManager<D>;

    fn describe(&self) -> String {
        self.description.clone()
    }
    fn manager(&self) -> TrackingManager<D> {
        self.manager.clone()
    }
    fn conn_id(conn: &Tracked<Raw<D>>) -> u64 {
        conn.id
    }
    fn query(conn: &mut Tracked<Raw<D>>) -> std::result::Result<(), OpError> {
        D::query(conn.parts().0)
    }
    fn begin(conn: &mut Tracked<Raw<D>>) -> std::result::Result<(), OpError> {
        let (raw, ctx) = conn.parts();
        D::begin(raw, &ctx.table)
    }
    fn end(conn: &mut Tracked<Raw<D>>, commit: bool) -> std::result::Result<(), OpError> {
        D::end(conn.parts().0, commit)
    }
    fn set_owner(conn: &mut Tracked<Raw<D>>, owner: &str) -> std::result::Result<(), OpError> {
        D::set_owner(conn.parts().0, owner)
    }
    fn session_state(conn: &mut Tracked<Raw<D>>) -> std::result::Result<Option<String>, OpError> {
        let (raw, ctx) = conn.parts();
        D::session_state(raw, ctx.check_trx)
    }

    fn server_open(&self) -> Option<usize> {
        let ids = self.sessions_now()?;
        let book = self.ctx.ledger.book.lock();
        // A session the pool closed is excused while the server reaps
        // it, unless its id is live again (reused by a new session).
        let counted = ids
            .iter()
            .filter(|id| book.live.contains_key(id) || !book.closed.contains(id))
            .count();
        let closed_so_far = book.closed_count;
        drop(book);
        // The server's own count of the pool user's sessions, in a
        // separate client; skipped while the chaos holds the server.
        if let Some(server) = self.server.as_ref().and_then(|s| s.try_lock()) {
            self.watch
                .sample(&*server, self.max_size, closed_so_far, || {
                    format!("({} listed by the monitor)", ids.len())
                });
        }
        self.server_peak_raw
            .fetch_max(ids.len() as u64, Ordering::Relaxed);
        self.server_lagging_max
            .fetch_max((ids.len() - counted) as u64, Ordering::Relaxed);
        Some(counted)
    }

    fn server_peak(&self) -> Option<usize> {
        Some(self.ctx.ledger.book.lock().peak_live)
    }

    fn chaos(&self, rng: &mut fastrand::Rng, stop: &AtomicBool) -> Option<&'static str> {
        let event = {
            let mut menu = self.menu.lock();
            if menu.is_empty() {
                menu.extend([KILL_ALL, KILL_SOME]);
                if self.server.is_some() {
                    menu.extend([RESTART, FREEZE, CAPACITY]);
                }
                if self.proxy.is_some() {
                    menu.extend([NET_LATENCY, NET_BLACKHOLE, NET_RESET, NET_REFUSE]);
                }
                rng.shuffle(&mut menu);
            }
            menu.pop()?
        };
        let fault = match event {
            KILL_ALL => {
                self.kill(rng, true);
                None
            }
            KILL_SOME => {
                self.kill(rng, false);
                None
            }
            RESTART => {
                self.restart();
                None
            }
            FREEZE | CAPACITY => {
                self.server_fault(event, rng, stop);
                None
            }
            NET_LATENCY => Some(FaultMode::Latency(Duration::from_millis(rng.u64(10..100)))),
            NET_BLACKHOLE => Some(FaultMode::Blackhole),
            NET_RESET => Some(FaultMode::Reset),
            _ => Some(FaultMode::Refuse),
        };
        if let (Some(mode), Some(proxy)) = (fault, &self.proxy) {
            // Latency slows the database down; the others cut it off.
            let down = !matches!(mode, FaultMode::Latency(_));
            if down {
                self.watch.down_begins();
            }
            proxy.set_mode(mode);
            hold(Duration::from_millis(rng.u64(1000..2000)), stop);
            self.heal_network();
            if down {
                self.watch.down_ends();
            }
        }
        Some(event)
    }

    fn heal(&self) {
        self.heal_network();
        if let Some(server) = &self.server {
            let mut server = server.lock();
            if !D::is_running(&server) {
                if let Err(e) = D::start_again(&mut server) {
                    eprintln!("stress: cannot start the server again: {e}");
                }
            }
        }
    }

    fn audit_closed(&self) -> std::result::Result<String, String> {
        let book = self.ctx.ledger.book.lock();
        let summary = format!(
            "{} opened, {} closed by the pool",
            book.opened, book.closed_count
        );
        if book.live_count == 0 && book.closed_unknown == 0 && book.opened == book.closed_count {
            Ok(summary)
        } else {
            let mut open: Vec<String> = book
                .live
                .keys()
                .map(|&id| crate::stress::backend::show_id(id))
                .collect();
            open.sort();
            Err(format!(
                "{summary}: {} still open ({}), {} closed twice or unknown",
                book.live_count,
                open.join(", "),
                book.closed_unknown
            ))
        }
    }

    fn wait_all_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.sessions_now().is_some_and(|ids| ids.is_empty()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn counters(&self) -> BTreeMap<&'static str, u64> {
        let l = &self.ctx.ledger;
        let book = l.book.lock();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut map = BTreeMap::from([
            ("opened", book.opened),
            ("closed", book.closed_count),
            ("closed_twice", book.closed_unknown),
            ("connect_attempts", get(&l.connect_attempts)),
            ("connect_failures", get(&l.connect_failures)),
            ("resets", get(&l.resets)),
            ("reset_failures", get(&l.reset_failures)),
            ("validations", get(&l.validations)),
            ("validation_failures", get(&l.validation_failures)),
            ("peak_open", book.peak_live as u64),
            ("server_peak_raw", get(&self.server_peak_raw)),
            ("server_lagging_max", get(&self.server_lagging_max)),
            ("server_samples", get(&self.samples)),
            ("monitor_failures", get(&self.monitor_failures)),
        ]);
        if self.server.is_some() || get(&self.killed) > 0 {
            map.insert("killed_backends", get(&self.killed));
        }
        if self.server.is_some() {
            map.insert("restarts", get(&self.restarts));
            map.insert("restart_failures", get(&self.restart_failures));
            map.insert("restart_ms_max", get(&self.restart_ms_max));
        }
        map
    }

    fn sample_every(&self) -> Duration {
        SAMPLE_EVERY
    }

    fn helper_threads(&self) -> &'static [&'static str] {
        D::HELPER_THREADS
    }

    /// Whatever the chaos flag: the run knows when it made the database
    /// unreachable, and the monitor sees when it is.
    fn fail_fast_expected(&self, _chaos: bool) -> bool {
        self.watch.down_recently()
    }

    fn extra_verdicts(&self) -> Vec<(&'static str, bool, String, Vec<String>)> {
        if self.server.is_none() {
            return Vec::new();
        }
        let w = &self.watch;
        let (violations, messages) = w.violations();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![(
            "the server's own count of the pool user's sessions never above max_size",
            violations == 0,
            format!(
                "{violations} sample(s) above max_size {} beyond the closes still lagging; \
                 peak {} in {} samples ({} failed); {} freeze(s), {} capacity limit(s)",
                self.max_size,
                get(&w.peak),
                get(&w.samples),
                get(&w.sample_failures),
                get(&w.freezes),
                get(&w.limits),
            ),
            messages,
        )]
    }
}

impl<D: Dialect> Drop for Real<D> {
    fn drop(&mut self) {
        // A server of our own goes away with its data; on a server given
        // by --url, remove the scratch table.
        if self.local {
            return;
        }
        let mut admin = self.admin.lock();
        let conn = match admin.conn.take() {
            Some(conn) => Ok(conn),
            None => self.dialect.connect_admin(),
        };
        if let Err(e) = conn.and_then(|mut conn| D::drop_table(&mut conn, &self.ctx.table)) {
            eprintln!(
                "stress: could not drop the scratch table {}: {e}",
                self.ctx.table
            );
        }
    }
}
