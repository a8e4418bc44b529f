//! Changes a user makes to a running pool: suspend and resume, resize,
//! soft eviction, and close.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bag::{IN_USE, RESERVED, VACANT};
use crate::error::Error;
use crate::observe::metrics::PoolCounters;
use crate::stamps::{FLAG_EVICT, FLAG_RETURNING};
use crate::types::CloseReason;
use crate::ManageConnection;

use super::shared::Inner;
use super::{CLOSED, RUNNING, SUSPENDED};

/// How long `close` waits for background resets in flight when the manager
/// sets no `reset_limit`.
pub(super) const CLOSE_WAITS_FOR_RETURNS: Duration = Duration::from_secs(5);

impl<M: ManageConnection> Inner<M> {
    pub(super) fn set_status(&self, status: u8) {
        let _guard = self.status_lock.lock();
        let _ = self.status.compare_exchange(
            if status == RUNNING {
                SUSPENDED
            } else {
                RUNNING
            },
            status,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
        self.status_cv.notify_all();
    }

    /// Closes every idle connection in seats `from..`.
    pub(super) fn sweep_idle(&self, from: usize, reason: CloseReason) {
        for claimed in self.bag.sweep_idle(from) {
            self.close_slot(claimed, reason);
        }
    }

    pub(super) fn resize(&self, max_size: u32) -> Result<(), Error> {
        self.resize_because(max_size, None)
    }

    /// `resize`, with the reason for the log line when the pool decided it
    /// itself (adaptive sizing).
    pub(super) fn resize_because(&self, max_size: u32, why: Option<&str>) -> Result<(), Error> {
        if let Err(reason) = crate::limits::check_max_size(max_size) {
            return Err(Error::Config {
                pool: self.name.clone(),
                setting: "max_size".into(),
                reason,
            });
        }
        let new = max_size as usize;
        self.bag.ensure_capacity(new);
        let min_idle = (self.config.effective_min_idle() as usize).min(new);
        self.min_idle.store(min_idle, Ordering::SeqCst);
        let old = self.max_size.swap(new, Ordering::SeqCst);
        crate::sync::heavy_fence(); // before the sweep: see make_available

        let why = why.map(|w| format!(": {w}")).unwrap_or_default();
        log::info!(
            "pool \"{}\": resized from {old} to {new} (min_idle {min_idle}){why}",
            self.name
        );
        if new != old {
            PoolCounters::bump(if new > old {
                &self.stats.resizes_up
            } else {
                &self.stats.resizes_down
            });
        }
        if new < old {
            self.sweep_idle(new, CloseReason::Evicted);
            // Lent surplus connections close on return; until then, idle ones
            // below the new size give way so the total drops to it at once.
            for i in 0..new.min(self.bag.capacity()) {
                if self.total.load(Ordering::SeqCst) <= new {
                    break;
                }
                if let Some(claimed) = self.bag.seat(i).try_claim(RESERVED) {
                    self.close_slot(claimed, CloseReason::Evicted);
                }
            }
        }
        self.ring_creator();
        self.ring_housekeeper();
        Ok(())
    }

    pub(super) fn soft_evict_all(&self) {
        // Whatever the caller did before (new credentials, a failover), then
        // the seats' states: the other half of the creator's fence after it
        // claims a seat to connect in (`create_one`). Either this loop sees
        // the seat taken and marks it, or that connect sees what the caller
        // did before calling.
        crate::sync::heavy_fence();
        for i in 0..self.bag.capacity() {
            let slot = self.bag.seat(i);
            if slot.state_hint() != VACANT {
                slot.flags.fetch_or(FLAG_EVICT, Ordering::SeqCst);
            }
        }
        crate::sync::heavy_fence(); // before the sweep: see make_available
        self.sweep_idle(0, CloseReason::Evicted);
        log::info!("pool \"{}\": soft eviction of all connections", self.name);
        self.ring_creator();
    }

    pub(super) fn close(&self) {
        {
            let _guard = self.status_lock.lock();
            if self.status.swap(CLOSED, Ordering::SeqCst) == CLOSED {
                return;
            }
            // Store, fence, then sweep: the other half of `make_available`.
            crate::sync::heavy_fence();
            self.status_cv.notify_all();
        }
        self.bag.wake_all(true);
        self.sweep_idle(0, CloseReason::PoolClosed);
        self.ring_creator();
        self.ring_housekeeper();
        let threads = std::mem::take(&mut *self.threads.lock());
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Connections their borrowers just gave back are still being reset
        // (or closed) on pool-io threads: wait for those jobs to end, at
        // most the reset limit; each closes its connection itself when done,
        // seeing the pool closed (`make_available`).
        let limit = self
            .reset_watch
            .map_or(CLOSE_WAITS_FOR_RETURNS, Duration::from_millis);
        let until = Instant::now() + limit;
        while self.return_jobs.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            crate::sync::pause(Duration::from_millis(1));
        }
        // Anything the threads released while stopping.
        self.sweep_idle(0, CloseReason::PoolClosed);
        // close() does not wait for lent connections: name them, so that one
        // that never comes back (a leak) can be traced.
        let lent: Vec<String> = (0..self.bag.capacity())
            .map(|i| self.bag.seat(i))
            .filter(|s| {
                s.state() == IN_USE && s.flags.load(Ordering::Relaxed) & FLAG_RETURNING == 0
            })
            .map(|s| {
                let id = s.id.load(Ordering::Relaxed);
                match self.leaks.as_ref().map(|l| l.site_of(s)) {
                    Some(Some(site)) => format!("{id} (taken at {site})"),
                    _ => id.to_string(),
                }
            })
            .collect();
        if lent.is_empty() {
            log::debug!("pool \"{}\": closed", self.name);
        } else {
            log::info!(
                "pool \"{}\": closed; connection(s) {} still lent could not be reclaimed now \
                 and will be closed when returned",
                self.name,
                lent.join(", ")
            );
        }
    }
}
