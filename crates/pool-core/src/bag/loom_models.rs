//! Loom models of the bag's protocols (`cargo xtask loom`).
//!
//! Each model runs two or three threads over one or two seats and lets loom
//! try every interleaving (up to its preemption bound). Loom's `UnsafeCell`
//! tracking fails a model if two threads could touch a connection at once, and
//! its deadlock detection fails it if a waiter without a deadline could park
//! with nobody left to wake it (a lost wake-up).

use std::time::Duration;

use crate::bag::{Bag, Fairness, Slot, WaitOutcome, IDLE, IN_USE, RESERVED, VACANT};
use crate::sync::{thread, Arc, Ordering, LOOM_FOREVER};

/// A bag whose seat 0 holds connection `1`, owned by the caller (`IN_USE`).
/// (The pool's bag under loom is strict: its fairness limit is zero.)
fn bag_with_owned_seat() -> Arc<Bag<u64>> {
    owned_seat_in(Bag::new(1))
}

fn owned_seat_in(bag: Bag<u64>) -> Arc<Bag<u64>> {
    let bag = Arc::new(bag);
    let slot = bag.slot(0);
    assert!(slot.try_claim_vacant());
    // SAFETY: we own the seat (claimed just above).
    unsafe { slot.put(1) };
    slot.state.store(IN_USE, Ordering::Relaxed);
    bag
}

/// Uses the connection in a seat the caller owns: loom checks exclusivity.
fn touch(slot: &Slot<u64>) {
    // SAFETY: every caller owns the seat (that is what the model checks).
    unsafe { slot.with_conn(|c| *c.expect("an owned seat holds a connection") += 1) };
}

fn scan(bag: &Bag<u64>) -> Option<usize> {
    bag.scan(0, 2)
}

/// Waits for a seat without a deadline (a lost wake-up is a deadlock),
/// uses its connection, and returns the seat's index.
/// What the pool's `make_available` does with a waiter's surplus seat when
/// the pool is open and not shrunk: release it.
fn release_surplus(bag: &Bag<u64>, index: usize) {
    bag.release(bag.slot(index));
}

fn wait_and_touch(bag: &Bag<u64>) -> usize {
    let out = bag.wait(
        || scan(bag),
        |_| {},
        || Some(LOOM_FOREVER),
        |i| release_surplus(bag, i),
    );
    let WaitOutcome::Got(i) = out else {
        panic!("{out:?}")
    };
    touch(bag.slot(i));
    i
}

/// A deadline that passes after one round of waiting.
fn one_round() -> impl FnMut() -> Option<Duration> {
    let mut tries = 1;
    move || {
        let left = (tries > 0).then_some(Duration::from_millis(1));
        tries -= 1;
        left
    }
}

#[test]
fn loom_return_never_loses_a_waiter() {
    loom::model(|| {
        let bag = bag_with_owned_seat();
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                wait_and_touch(&bag);
            })
        };
        touch(bag.slot(0));
        bag.release(bag.slot(0));
        waiter.join().unwrap();
        assert_eq!(bag.waiting(), 0);
    });
}

#[test]
fn loom_waiter_timing_out_as_a_seat_is_handed_over() {
    loom::model(|| {
        let bag = bag_with_owned_seat();
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                let out = bag.wait(
                    || scan(&bag),
                    |_| {},
                    one_round(),
                    |i| release_surplus(&bag, i),
                );
                if let WaitOutcome::Got(i) = out {
                    touch(bag.slot(i));
                    return true;
                }
                assert_eq!(out, WaitOutcome::TimedOut);
                false
            })
        };
        bag.release(bag.slot(0));
        let got = waiter.join().unwrap();
        // Either the waiter took the seat, or it is idle again: never lost.
        let state = bag.slot(0).state.load(Ordering::SeqCst);
        if got {
            assert_eq!(state, IN_USE);
        } else {
            assert_eq!(state, IDLE);
        }
        assert_eq!(bag.waiting(), 0);
    });
}

#[test]
fn loom_return_racing_housekeeper_reserve() {
    loom::model(|| {
        let bag = bag_with_owned_seat();
        let housekeeper = {
            let bag = bag.clone();
            thread::spawn(move || {
                let slot = bag.slot(0);
                if slot.try_claim(RESERVED) {
                    touch(slot); // a keepalive check
                    bag.release(slot);
                }
            })
        };
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                let i = wait_and_touch(&bag);
                bag.release(bag.slot(i));
            })
        };
        touch(bag.slot(0));
        bag.release(bag.slot(0));
        housekeeper.join().unwrap();
        waiter.join().unwrap();
        assert_eq!(bag.slot(0).state.load(Ordering::SeqCst), IDLE);
        assert_eq!(bag.waiting(), 0);
    });
}

#[test]
fn loom_close_wakes_a_waiter_or_it_gets_the_seat() {
    loom::model(|| {
        let bag = bag_with_owned_seat();
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                bag.wait(
                    || scan(&bag),
                    |_| {},
                    || Some(LOOM_FOREVER),
                    |i| release_surplus(&bag, i),
                )
            })
        };
        bag.wake_all(true);
        let out = waiter.join().unwrap();
        assert_eq!(out, WaitOutcome::Closed);
        assert_eq!(bag.slot(0).state.load(Ordering::SeqCst), IN_USE);
    });
}

#[test]
fn loom_creator_fill_and_borrow() {
    loom::model(|| {
        let bag: Arc<Bag<u64>> = Arc::new(Bag::new(1));
        let creator = {
            let bag = bag.clone();
            thread::spawn(move || {
                let slot = bag.slot(0);
                assert!(slot.try_claim_vacant());
                // SAFETY: claimed just above.
                unsafe { slot.put(7) };
                bag.release(slot);
            })
        };
        let out = bag.wait(
            || scan(&bag),
            |_| {},
            || Some(LOOM_FOREVER),
            |i| release_surplus(&bag, i),
        );
        let WaitOutcome::Got(i) = out else {
            panic!("{out:?}")
        };
        touch(bag.slot(i));
        // Close it: the seat becomes vacant, the connection is gone.
        // SAFETY: we own the seat.
        assert_eq!(unsafe { bag.slot(i).take() }, Some(8));
        bag.slot(i).state.store(VACANT, Ordering::Release);
        creator.join().unwrap();
    });
}

#[test]
fn loom_barging_return_wakes_a_parked_waiter() {
    // Nobody ever starves: the returned seat stays idle and the waiter must
    // be woken to take it (a lost wake-up is a deadlock here).
    loom::model(|| {
        let bag = owned_seat_in(Bag::with_fairness(1, Fairness::Barge));
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                wait_and_touch(&bag);
            })
        };
        touch(bag.slot(0));
        assert!(!bag.release(bag.slot(0)), "barging never hands over");
        waiter.join().unwrap();
        assert_eq!(bag.waiting(), 0);
    });
}

#[test]
fn loom_barging_wake_up_is_passed_on_by_a_leaving_waiter() {
    // Two waiters, one of which gives up: a wake-up meant for it must reach
    // the other, which waits without a deadline.
    loom::model(|| {
        let bag = owned_seat_in(Bag::with_fairness(1, Fairness::Barge));
        let quitter = {
            let bag = bag.clone();
            thread::spawn(move || {
                let out = bag.wait(
                    || scan(&bag),
                    |_| {},
                    one_round(),
                    |i| release_surplus(&bag, i),
                );
                if let WaitOutcome::Got(i) = out {
                    touch(bag.slot(i));
                    bag.release(bag.slot(i));
                }
            })
        };
        let patient = {
            let bag = bag.clone();
            thread::spawn(move || {
                wait_and_touch(&bag);
            })
        };
        bag.release(bag.slot(0));
        quitter.join().unwrap();
        patient.join().unwrap();
        assert_eq!(bag.waiting(), 0);
    });
}

#[test]
fn loom_watched_reset_is_ended_or_given_up_exactly_once() {
    // A background reset under watch (`Inner::reset_in_background`) races the
    // housekeeper, which gives the connection up once the reset is overdue
    // (here: at once). Exactly one side wins; if the housekeeper does, the
    // seat goes back to the job only after the housekeeper's part, and the
    // job frees it after dropping the connection: loom's cell tracking
    // fails the model if the job's `take` could race anything.
    loom::model(|| {
        let bag = bag_with_owned_seat();
        let housekeeper = {
            let bag = bag.clone();
            thread::spawn(move || {
                let slot = bag.slot(0);
                let since = slot.reset_since.load(Ordering::Relaxed);
                if !slot.give_up_watch(since) {
                    return false;
                }
                // Counted closed here (the pool's `give_up_reset`); the seat
                // goes back to the job, which frees it.
                slot.hand_back();
                true
            })
        };
        let slot = bag.slot(0);
        // SAFETY: we own the seat (IN_USE).
        let mut conn = unsafe { slot.take() }.unwrap();
        let since = slot.begin_watch(7);
        conn += 1; // the reset
        let job_won = slot.end_watch(since);
        if job_won {
            // SAFETY: winning `end_watch` gives the seat back.
            unsafe { slot.put(conn) };
            touch(slot);
            bag.release(slot);
        } else {
            drop(conn); // the pool closes it here, before freeing the seat
            slot.wait_given_up();
            // SAFETY: `wait_given_up` gave the seat back to us.
            assert_eq!(unsafe { slot.take() }, None, "the seat is empty");
            slot.state.store(VACANT, Ordering::Release);
        }
        let gave_up = housekeeper.join().unwrap();
        assert!(
            job_won != gave_up,
            "job won: {job_won}, given up: {gave_up}"
        );
        assert_eq!(slot.reset_since.load(Ordering::Relaxed), 0);
        let state = slot.state.load(Ordering::Acquire);
        assert_eq!(state, if job_won { IDLE } else { VACANT });
    });
}
