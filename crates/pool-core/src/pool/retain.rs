//! `retain`: closing the connections a user's predicate rejects, idle ones
//! now and lent ones when they come back, with the same mark as
//! `soft_evict_all` (`FLAG_EVICT`) and the same Dekker pair against a
//! concurrent return.

use std::sync::atomic::Ordering;

use crate::bag::{IDLE, RESERVED, VACANT};
use crate::clock;
use crate::info::ConnectionInfo;
use crate::stamps::FLAG_EVICT;
use crate::types::CloseReason;
use crate::ManageConnection;

use super::shared::Inner;

impl<M: ManageConnection> Inner<M> {
    /// Judges every open connection by `keep` and marks the rejected ones
    /// for eviction; then closes those that are idle. Returns how many it
    /// marked.
    ///
    /// `keep` runs on a snapshot of each seat's stamps, with no seat
    /// claimed (a panic in it strands nothing). A seat that is being opened
    /// (no id yet) holds a connection newer than this call: it is kept.
    ///
    /// The mark cannot be lost. A return (`make_available`: store `IDLE`,
    /// fence, read the flags) and this method (set the flag, fence, then
    /// try to claim the idle seat) form a Dekker pair, so either the
    /// returner closes the connection or the sweep below does; a borrow
    /// sees the flag in `check_out`, a housekeeping round in its checks,
    /// and the creator's publish keeps it (see there). The mark can land on
    /// a newer connection when the judged one was closed and its seat
    /// refilled between the snapshot and the mark: that one is then closed
    /// too (an extra connect, never a connection kept that should go).
    pub(super) fn retain(&self, mut keep: impl FnMut(&ConnectionInfo) -> bool) -> usize {
        let now = clock::now();
        let mut marked = Vec::new();
        for i in 0..self.bag.capacity() {
            let slot = self.bag.seat(i);
            let state = slot.state_hint();
            if state == VACANT {
                continue;
            }
            let id = slot.id.load(Ordering::SeqCst);
            if id == 0 {
                continue;
            }
            let info = ConnectionInfo::read(slot, now, state != IDLE);
            if keep(&info) {
                continue;
            }
            slot.flags.fetch_or(FLAG_EVICT, Ordering::SeqCst);
            if slot.id.load(Ordering::SeqCst) == id {
                marked.push(i);
            }
        }
        if marked.is_empty() {
            return 0;
        }
        // Set, fence, then look: the other half of `make_available`.
        crate::sync::heavy_fence();
        for &i in &marked {
            if let Some(claimed) = self.bag.seat(i).try_claim(RESERVED) {
                if claimed.flags.load(Ordering::SeqCst) & FLAG_EVICT != 0 {
                    self.close_slot(claimed, CloseReason::Evicted);
                } else {
                    self.make_available(claimed);
                }
            }
        }
        log::info!(
            "pool \"{}\": retain rejected {} connection(s)",
            self.name,
            marked.len()
        );
        self.ring_creator();
        marked.len()
    }
}
