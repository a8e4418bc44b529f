//! Loom models of the bag's protocols (`cargo xtask loom`).
//!
//! Each model runs two or three threads over one or two seats and lets loom
//! try every interleaving (up to its preemption bound). Loom's `UnsafeCell`
//! tracking fails a model if two threads could touch a connection at once, and
//! its deadlock detection fails it if a waiter without a deadline could park
//! with nobody left to wake it (a lost wake-up).

use std::time::Duration;

use crate::bag::{Bag, Claimed, Fairness, Seat, WaitOutcome, IDLE, IN_USE, RESERVED, VACANT};
use crate::sync::{heavy_fence, thread, Arc, AtomicU8, Ordering, LOOM_FOREVER};

/// A bag whose seat 0 holds connection `1`, owned by the caller (`IN_USE`).
/// (The pool's bag under loom is strict: its fairness limit is zero.)
fn bag_with_owned_seat() -> Arc<Bag<u64>> {
    owned_seat_in(Bag::new(1))
}

fn owned_seat_in(bag: Bag<u64>) -> Arc<Bag<u64>> {
    let bag = Arc::new(bag);
    let mut claimed = bag.seat(0).try_claim_vacant().expect("vacant");
    claimed.put(1);
    // Lent (`IN_USE`), as the pool's loans are; the model's main thread
    // owns it (see `owned`).
    claimed.keep().state.store(IN_USE, Ordering::Relaxed);
    bag
}

/// The guard of seat `i`, which the calling model thread owns by the
/// model's construction (it set the seat up, or was handed it and kept it).
fn owned(bag: &Bag<u64>, i: usize) -> Claimed<'_, u64> {
    // SAFETY: each call site owns seat `i` at that point of the model (the
    // property loom checks: a second owner would race on the cell).
    unsafe { Claimed::assume(bag.seat(i)) }
}

/// Uses the connection in a seat the caller owns: loom checks exclusivity.
fn touch(claimed: &mut Claimed<'_, u64>) {
    claimed.with_conn(|c| *c.expect("an owned seat holds a connection") += 1);
}

fn scan(bag: &Bag<u64>) -> Option<Claimed<'_, u64>> {
    bag.scan(0, 2)
}

/// What the pool's `make_available` does with a waiter's surplus seat when
/// the pool is open and not shrunk: release it.
fn release_surplus(bag: &Bag<u64>, claimed: Claimed<'_, u64>) {
    bag.release(claimed);
}

/// Waits for a seat without a deadline (a lost wake-up is a deadlock),
/// uses its connection, and returns the seat's index (still owned).
fn wait_and_touch(bag: &Bag<u64>) -> usize {
    let out = bag.wait(
        || scan(bag),
        |_| {},
        || Some(LOOM_FOREVER),
        |c| release_surplus(bag, c),
    );
    let WaitOutcome::Got(mut claimed) = out else {
        panic!("the waiter gets the seat")
    };
    touch(&mut claimed);
    claimed.keep().index as usize
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
        let mut mine = owned(&bag, 0);
        touch(&mut mine);
        bag.release(mine);
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
                    |c| release_surplus(&bag, c),
                );
                match out {
                    WaitOutcome::Got(mut claimed) => {
                        touch(&mut claimed);
                        claimed.keep();
                        true
                    }
                    WaitOutcome::TimedOut => false,
                    _ => panic!("neither closed nor failed"),
                }
            })
        };
        bag.release(owned(&bag, 0));
        let got = waiter.join().unwrap();
        // Either the waiter took the seat, or it is idle again: never lost.
        let state = bag.seat(0).state();
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
                if let Some(mut claimed) = bag.seat(0).try_claim(RESERVED) {
                    touch(&mut claimed); // a keepalive check
                    bag.release(claimed);
                }
            })
        };
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                let i = wait_and_touch(&bag);
                bag.release(owned(&bag, i));
            })
        };
        let mut mine = owned(&bag, 0);
        touch(&mut mine);
        bag.release(mine);
        housekeeper.join().unwrap();
        waiter.join().unwrap();
        assert_eq!(bag.seat(0).state(), IDLE);
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
                let out = bag.wait(
                    || scan(&bag),
                    |_| {},
                    || Some(LOOM_FOREVER),
                    |c| release_surplus(&bag, c),
                );
                matches!(out, WaitOutcome::Closed)
            })
        };
        bag.wake_all(true);
        let closed = waiter.join().unwrap();
        assert!(closed, "a closed pool's waiter is told so");
        assert_eq!(bag.seat(0).state(), IN_USE);
    });
}

#[test]
fn loom_creator_fill_and_borrow() {
    loom::model(|| {
        let bag: Arc<Bag<u64>> = Arc::new(Bag::new(1));
        let creator = {
            let bag = bag.clone();
            thread::spawn(move || {
                let mut claimed = bag.seat(0).try_claim_vacant().expect("vacant");
                claimed.put(7);
                bag.release(claimed);
            })
        };
        let out = bag.wait(
            || scan(&bag),
            |_| {},
            || Some(LOOM_FOREVER),
            |c| release_surplus(&bag, c),
        );
        let WaitOutcome::Got(mut claimed) = out else {
            panic!("the borrower gets the new connection")
        };
        touch(&mut claimed);
        // Close it: the seat becomes vacant, the connection is gone.
        assert_eq!(claimed.take(), Some(8));
        claimed.vacate();
        creator.join().unwrap();
        assert_eq!(bag.seat(0).state(), VACANT);
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
        let mut mine = owned(&bag, 0);
        touch(&mut mine);
        assert!(!bag.release(mine), "barging never hands over");
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
                    |c| release_surplus(&bag, c),
                );
                if let WaitOutcome::Got(mut claimed) = out {
                    touch(&mut claimed);
                    bag.release(claimed);
                }
            })
        };
        let patient = {
            let bag = bag.clone();
            thread::spawn(move || {
                wait_and_touch(&bag);
            })
        };
        bag.release(owned(&bag, 0));
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
                let since = bag.seat(0).watched_since();
                let Some(giving_up) = bag.seat(0).give_up_watch(since) else {
                    return false;
                };
                // Counted closed here (the pool's `give_up_reset`); the seat
                // goes back to the job, which frees it.
                giving_up.hand_back();
                true
            })
        };
        let slot = bag.seat(0);
        let mut mine = owned(&bag, 0);
        let mut conn = mine.take().unwrap();
        let watch = mine.begin_watch(7);
        conn += 1; // the reset
        let job_won = match watch.end() {
            Ok(mut mine) => {
                mine.put(conn);
                touch(&mut mine);
                bag.release(mine);
                true
            }
            Err(given_up) => {
                let _closed = conn; // the pool closes it here, before freeing the seat
                let mut mine = given_up.wait();
                assert_eq!(mine.take(), None, "the seat is empty");
                mine.vacate();
                false
            }
        };
        let gave_up = housekeeper.join().unwrap();
        assert!(
            job_won != gave_up,
            "job won: {job_won}, given up: {gave_up}"
        );
        assert_eq!(slot.reset_since.load(Ordering::Relaxed), 0);
        let state = slot.state();
        assert_eq!(state, if job_won { IDLE } else { VACANT });
    });
}

#[test]
fn loom_waiter_scanning_while_handed_a_seat_loses_neither() {
    // Two occupied seats: seat 0 is lent to the main thread, seat 1 to a
    // second borrower. A waiter (no deadline) waits; both borrowers return.
    // The strict bag (fairness limit zero) hands returned seats to the
    // starving waiter, whose scan may meanwhile have claimed the other seat:
    // then it keeps one and gives the other back through `surplus` (the
    // pool's `make_available`). Whatever the interleaving, the waiter ends
    // with exactly one seat, the other is idle, and no connection is touched
    // by two threads (loom's cell tracking).
    loom::model(|| {
        let bag: Arc<Bag<u64>> = Arc::new(Bag::new(2));
        for (i, conn) in [(0, 1), (1, 10)] {
            let mut claimed = bag.seat(i).try_claim_vacant().expect("vacant");
            claimed.put(conn);
            claimed.keep().state.store(IN_USE, Ordering::Relaxed);
        }
        let waiter = {
            let bag = bag.clone();
            thread::spawn(move || {
                let i = wait_and_touch(&bag);
                bag.release(owned(&bag, i));
                i
            })
        };
        let second = {
            let bag = bag.clone();
            thread::spawn(move || {
                let mut mine = owned(&bag, 1);
                touch(&mut mine);
                bag.release(mine);
            })
        };
        let mut mine = owned(&bag, 0);
        touch(&mut mine);
        bag.release(mine);
        second.join().unwrap();
        let got = waiter.join().unwrap();
        assert!(got < 2);
        // Both seats are idle again: neither was lost nor left claimed.
        assert_eq!(bag.seat(0).state(), IDLE);
        assert_eq!(bag.seat(1).state(), IDLE);
        assert_eq!(bag.waiting(), 0);
    });
}

#[test]
fn loom_bag_growth_keeps_existing_seats_reachable() {
    // `resize` grows the bag (a new bucket, then the capacity, with Release)
    // while another thread claims and uses an existing seat, and a third
    // reads a seat of the new bucket once the capacity says it exists.
    loom::model(|| {
        let bag = Arc::new(Bag::<u64>::new(1));
        let grower = {
            let bag = bag.clone();
            thread::spawn(move || bag.ensure_capacity(40))
        };
        let reader = {
            let bag = bag.clone();
            thread::spawn(move || {
                if bag.capacity() > 20 {
                    // Published with its bucket: a valid, vacant seat.
                    assert_eq!(bag.seat(20).index, 20);
                    assert_eq!(bag.seat(20).state(), VACANT);
                }
            })
        };
        let mut claimed = bag.seat(0).try_claim_vacant().expect("vacant");
        claimed.put(3);
        touch(&mut claimed);
        assert_eq!(claimed.take(), Some(4));
        claimed.vacate();
        grower.join().unwrap();
        reader.join().unwrap();
        assert!(bag.capacity() >= 40);
    });
}

#[test]
fn loom_check_in_racing_close_leaves_nothing_idle() {
    // The pool's `make_available` (a returned connection, made idle, then
    // closed after all if the pool closed meanwhile) against `close` (mark
    // the pool closed, fence, sweep the idle seats): whichever order, the
    // connection is closed exactly once and the seat ends vacant, never
    // idle in a closed pool.
    loom::model(|| {
        let bag = bag_with_owned_seat();
        let closed = Arc::new(AtomicU8::new(0));
        let closes = Arc::new(AtomicU8::new(0));
        let close_it = |mut claimed: Claimed<'_, u64>, closes: &AtomicU8| {
            assert!(claimed.take().is_some(), "a connection to close");
            closes.fetch_add(1, Ordering::SeqCst);
            claimed.vacate();
        };
        let closer = {
            let (bag, closed, closes) = (bag.clone(), closed.clone(), closes.clone());
            thread::spawn(move || {
                closed.store(1, Ordering::SeqCst);
                heavy_fence();
                for claimed in bag.sweep_idle(0) {
                    close_it(claimed, &closes);
                }
            })
        };
        let mut mine = owned(&bag, 0);
        touch(&mut mine);
        let retire = |_: &Seat<u64>| closed.load(Ordering::SeqCst) != 0;
        if let Some(claimed) = bag.release_or_reclaim(mine, retire) {
            close_it(claimed, &closes);
        }
        closer.join().unwrap();
        assert_eq!(closes.load(Ordering::SeqCst), 1, "closed exactly once");
        assert_eq!(bag.seat(0).state(), VACANT, "nothing idle after close");
    });
}
