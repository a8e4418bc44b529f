//! Scenarios 1 to 4 of the leak suite: a long loan, a forgotten connection,
//! a panicking holder and holders whose threads exit.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use log::Level;
use pool_core::{Pool, PooledConnection};
use pool_sim::{SimConn, SimManager};

use super::capture_log::Recording;
use super::{
    close_and_audit, ensure, join, sim_db, spawn_named, wait_for_pool, Context, LeaksArgs,
};
use crate::proc::StressPanic;
use crate::util;

/// The message fragment naming a call site in this file at `line`
/// (`xtask/src/leaks/scenarios.rs:123:`; the column follows).
pub(super) fn site(line: u32) -> String {
    format!("{}:{line}:", file!())
}

/// Scenario 1: one loan past the threshold gives exactly one WARN naming
/// the call site and thread, and exactly one INFO when returned.
pub(super) fn long_loan(args: &LeaksArgs) -> std::result::Result<String, String> {
    const POOL: &str = "leaks-long-loan";
    const HOLDER: &str = "leaks-holder";
    let rec = Recording::start(POOL)?;
    let threshold = args.threshold();
    let db = sim_db(args.seed);
    let pool = Pool::builder()
        .name(POOL)
        .max_size(2)
        .min_idle(Some(2))
        .connection_timeout(args.patience())
        .leak_detection_threshold(Some(threshold))
        .build(db.manager())
        .context("build failed")?;

    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = spawn_named(HOLDER, {
        let pool = pool.clone();
        move || -> std::result::Result<(), String> {
            let (conn, line) = (pool.get(), line!());
            let conn = conn.context("holder's get failed")?;
            held_tx.send((conn.id(), line)).ok();
            // Until told, or until the scenario gave up (sender dropped).
            let _ = release_rx.recv_timeout(Duration::from_secs(120));
            drop(conn);
            Ok(())
        }
    })?;
    let (id, line) = held_rx
        .recv_timeout(args.patience())
        .context("the holder did not get a connection")?;
    let lent_at = Instant::now();

    // Short loans meanwhile: each one below the threshold, each one waking
    // the housekeeper, which then looks at the long loan again.
    let mut short_loans = 0;
    while lent_at.elapsed() < threshold / 2 {
        drop(pool.get().context("short loan failed")?);
        short_loans += 1;
        thread::sleep(threshold / 20);
    }
    let warn = format!("connection {id} has been lent for");
    ensure(rec.wait_for(Level::Warn, &warn, args.patience()), || {
        format!(
            "no leak warning for connection {id} {} after it was lent (threshold {threshold:?})",
            util::human(lent_at.elapsed())
        )
    })?;
    let warned_after = lent_at.elapsed();

    let leaks = pool.leaks();
    ensure(leaks.len() == 1 && leaks[0].id == id, || {
        format!("pool.leaks() should list connection {id} alone: {leaks:?}")
    })?;
    let report = &leaks[0];
    ensure(
        report.thread == HOLDER
            && report.location.file() == file!()
            && report.location.line() == line,
        || {
            format!(
                "pool.leaks() names thread {:?} at {}, expected {HOLDER:?} at {}",
                report.thread,
                report.location,
                site(line)
            )
        },
    )?;

    // Keep holding for three more thresholds, with more short loans waking
    // the housekeeper: it must not warn again.
    let until = Instant::now() + threshold * 3;
    while Instant::now() < until {
        drop(pool.get().context("short loan failed")?);
        short_loans += 1;
        thread::sleep(threshold / 10);
    }
    release_tx.send(()).ok();
    join(holder)?;
    let returned = format!("connection {id}, previously reported as leaked, was returned after");
    ensure(
        rec.wait_for(Level::Info, &returned, args.patience()),
        || format!("no \"returned\" info for connection {id}"),
    )?;

    let warnings = rec.at(Level::Warn);
    ensure(warnings.len() == 1, || {
        format!(
            "expected exactly one warning, got {}: {warnings:#?}",
            warnings.len()
        )
    })?;
    let warning = &warnings[0];
    let thread_part = format!("it was taken by thread \"{HOLDER}\" at {}", site(line));
    ensure(
        warning.contains(&warn) && warning.contains(&thread_part),
        || {
            format!(
                "the warning should name thread {HOLDER:?} and {}: {warning}",
                site(line)
            )
        },
    )?;
    let infos = rec.matching(Level::Info, "previously reported as leaked");
    ensure(infos.len() == 1, || {
        format!(
            "expected exactly one \"returned\" info, got {}: {infos:#?}",
            infos.len()
        )
    })?;
    ensure(pool.leaks().is_empty(), || {
        format!(
            "pool.leaks() still lists {:?} after the return",
            pool.leaks()
        )
    })?;
    close_and_audit(pool, &db)?;
    Ok(format!(
        "connection {id} taken by \"{HOLDER}\" at {}, warned once after {} (threshold {}), \
         no repeat over {short_loans} housekeeper wake-ups, return reported once",
        report.location,
        util::human(warned_after),
        util::human(threshold),
    ))
}

/// Scenario 2: a connection lost with `mem::forget` is reported, the pool
/// keeps serving, `close()` returns promptly naming it, and dropping the
/// pool closes it too (a borrowed loan holds no reference to the pool).
pub(super) fn forgotten_connection(args: &LeaksArgs) -> std::result::Result<String, String> {
    const POOL: &str = "leaks-forgotten";
    const TRAFFIC_THREADS: usize = 4;
    const LOANS_PER_THREAD: usize = 50;
    let rec = Recording::start(POOL)?;
    let db = sim_db(args.seed.wrapping_add(2));
    let pool = Pool::builder()
        .name(POOL)
        .max_size(4)
        .min_idle(Some(4))
        .connection_timeout(args.patience())
        .leak_detection_threshold(Some(args.threshold()))
        .build(db.manager())
        .context("build failed")?;

    let (conn, line) = (pool.get(), line!());
    let conn = conn.context("get failed")?;
    let (id, db_id) = (conn.id(), SimConn::id(&conn));
    std::mem::forget(conn);

    let warn = format!("connection {id} has been lent for");
    ensure(rec.wait_for(Level::Warn, &warn, args.patience()), || {
        format!("no leak warning for the forgotten connection {id}")
    })?;
    let leaks = pool.leaks();
    ensure(
        leaks.len() == 1
            && leaks[0].id == id
            && leaks[0].location.file() == file!()
            && leaks[0].location.line() == line,
        || {
            format!(
                "pool.leaks() should list connection {id} taken at {}: {leaks:?}",
                site(line)
            )
        },
    )?;

    // The other connections keep working, on other threads.
    let traffic: Vec<_> = (0..TRAFFIC_THREADS)
        .map(|t| {
            let pool = pool.clone();
            spawn_named(&format!("leaks-traffic-{t}"), move || {
                for _ in 0..LOANS_PER_THREAD {
                    let mut conn = pool.get().context("get failed while one is forgotten")?;
                    ensure(SimConn::id(&conn) != db_id, || {
                        format!("the forgotten connection (database id {db_id}) was lent again")
                    })?;
                    conn.query("SELECT 1").context("query failed")?;
                }
                Ok(())
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    for t in traffic {
        join(t)?;
    }
    let state = pool.state();
    ensure(state.active == 1 && state.total == 4, || {
        format!("expected only the forgotten connection lent, pool state: {state}")
    })?;

    let started = Instant::now();
    pool.close();
    let close_took = started.elapsed();
    ensure(close_took < Duration::from_secs(2), || {
        format!(
            "close() took {} with a connection forgotten",
            util::human(close_took)
        )
    })?;
    let named = format!("{id} (taken at {}", site(line));
    let closed = rec.matching(Level::Info, "closed; connection(s) ");
    ensure(
        closed.len() == 1 && closed[0].contains(&named) && closed[0].contains("still lent"),
        || format!("close()'s info line should name connection {named}...): {closed:#?}"),
    )?;
    drop(pool);
    // A loan from `get()` borrows the pool and holds no reference to it, so
    // forgetting it leaks nothing past the pool: once the last handle is
    // gone the pool's memory is freed, and the forgotten seat's connection
    // is closed with it (once, like every other).
    ensure(db.wait_until(args.patience(), |s| s.open == 0), || {
        format!(
            "database ids {:?} open after the pool was dropped, expected none \
             (the forgotten {db_id} goes with the pool)",
            db.open_ids()
        )
    })?;
    let stats = db.stats();
    ensure(stats.closed_twice == 0, || {
        format!("{} connection(s) closed twice", stats.closed_twice)
    })?;
    Ok(format!(
        "connection {id} reported (pool.leaks() and warning, taken at {}), \
         {} loans on {TRAFFIC_THREADS} other threads served, close() took {} and named it",
        leaks[0].location,
        TRAFFIC_THREADS * LOANS_PER_THREAD,
        util::human(close_took),
    ))
}

/// Scenario 3: connections held by panicking threads (a thread that dies,
/// and a panic caught on a thread that borrows again) are closed and never
/// lent again; the next borrowers get clean sessions.
pub(super) fn panicking_holder(args: &LeaksArgs) -> std::result::Result<String, String> {
    const MAX: u32 = 2;
    let db = sim_db(args.seed.wrapping_add(3));
    let pool = Pool::builder()
        .name("leaks-panicking")
        .max_size(MAX)
        .min_idle(Some(MAX))
        .connection_timeout(args.patience())
        .build(db.manager())
        .context("build failed")?;

    /// Borrows, dirties the session (variable and open transaction), sends
    /// the database id, and panics while holding the connection.
    fn borrow_dirty_and_panic(pool: &Pool<SimManager>, ids: &mpsc::Sender<u64>) {
        let mut conn = pool.get().expect("get failed");
        conn.set_var("role", "admin").expect("set_var failed");
        conn.begin().expect("begin failed");
        ids.send(SimConn::id(&conn)).ok();
        panic::panic_any(StressPanic);
    }

    /// Borrows every connection of the pool at once; none may be one of
    /// `dead`, all must be clean. Returns their database ids.
    fn borrow_all(pool: &Pool<SimManager>, dead: &[u64]) -> std::result::Result<Vec<u64>, String> {
        let conns = (0..MAX)
            .map(|_| pool.get().context("get after the panic failed"))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let ids: Vec<u64> = conns.iter().map(|c| SimConn::id(c)).collect();
        ensure(!ids.iter().any(|id| dead.contains(id)), || {
            format!("a connection held during a panic was lent again: lent {ids:?}, dead {dead:?}")
        })?;
        ensure(conns.iter().all(|c| c.is_session_clean()), || {
            "a borrower found a dirty session".to_owned()
        })?;
        Ok(ids)
    }

    // (a) The thread dies from the panic.
    let (ids_tx, ids_rx) = mpsc::channel();
    let dying = spawn_named("leaks-panicker", {
        let pool = pool.clone();
        let ids_tx = ids_tx.clone();
        move || borrow_dirty_and_panic(&pool, &ids_tx)
    })?;
    ensure(dying.join().is_err(), || {
        "the panicking thread did not panic".to_owned()
    })?;
    let first = ids_rx
        .recv_timeout(args.patience())
        .context("the panicking thread sent no id")?;
    let mut dead = vec![first];
    let after_death = borrow_all(&pool, &dead)?;

    // (b) The panic is caught and the same thread borrows again (its
    // thread cache points at the seat it just used).
    let survivor = spawn_named("leaks-survivor", {
        let pool = pool.clone();
        let mut dead = dead.clone();
        move || {
            let caught = panic::catch_unwind(AssertUnwindSafe(|| {
                borrow_dirty_and_panic(&pool, &ids_tx);
            }));
            ensure(caught.is_err(), || "no panic to catch".to_owned())?;
            let second = ids_rx
                .recv_timeout(Duration::from_secs(5))
                .context("no id from the caught panic")?;
            dead.push(second);
            let ids = borrow_all(&pool, &dead)?;
            Ok((second, ids))
        }
    })?;
    let (second, after_catch) = join(survivor)?;
    dead.push(second);

    // Not leaked: both closed by the database's count, and nothing open
    // beyond what the pool holds.
    ensure(
        db.wait_until(args.patience(), |s| s.open == pool.state().total as usize),
        || {
            format!(
                "database has {:?} open, pool state {}",
                db.open_ids(),
                pool.state()
            )
        },
    )?;
    let open = db.open_ids();
    ensure(!dead.iter().any(|d| open.contains(d)), || {
        format!("connections {dead:?} held during panics are still open: {open:?}")
    })?;
    close_and_audit(pool, &db)?;
    Ok(format!(
        "database ids {dead:?} closed (thread died, panic caught); next borrowers got \
         {after_death:?} then {after_catch:?}, all clean; 0 open after close"
    ))
}

thread_local! {
    /// A connection kept by a thread until it exits (scenario 4).
    static STASH: RefCell<Option<PooledConnection<'static, SimManager>>> = const { RefCell::new(None) };
}

/// Scenario 4: threads exit while holding connections (one in a local
/// binding, two in a `thread_local!`); the connections come back idle.
pub(super) fn exiting_holders(args: &LeaksArgs) -> std::result::Result<String, String> {
    const MAX: u32 = 4;
    const HOLDERS: usize = 3;
    let db = sim_db(args.seed.wrapping_add(4));
    let pool = Pool::builder()
        .name("leaks-exiting")
        .max_size(MAX)
        .min_idle(Some(MAX))
        .connection_timeout(args.patience())
        .build(db.manager())
        .context("build failed")?;
    ensure(
        wait_for_pool(&pool, args.patience(), |s| s.idle == MAX),
        || format!("the pool did not fill: {}", pool.state()),
    )?;

    let all_holding = std::sync::Arc::new(Barrier::new(HOLDERS + 1));
    let go = std::sync::Arc::new(Barrier::new(HOLDERS + 1));
    let (ids_tx, ids_rx) = mpsc::channel();
    let holders = (0..HOLDERS)
        .map(|h| {
            let pool = pool.clone();
            let (all_holding, go, ids_tx) = (all_holding.clone(), go.clone(), ids_tx.clone());
            spawn_named(&format!("leaks-exiting-{h}"), move || {
                // Holder 0 keeps its connection in a local, dropped as the
                // thread's function returns; the others in a thread_local!,
                // dropped as the thread exits.
                let mut ok = false;
                let _local = match pool.get_owned() {
                    Ok(conn) => {
                        ok = true;
                        ids_tx.send(SimConn::id(&conn)).ok();
                        if h == 0 {
                            Some(conn)
                        } else {
                            STASH.with(|s| *s.borrow_mut() = Some(conn));
                            None
                        }
                    }
                    Err(_) => None,
                };
                all_holding.wait();
                go.wait();
                ok
            })
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    drop(ids_tx);
    all_holding.wait();
    let held: BTreeSet<u64> = ids_rx.try_iter().collect();
    let while_held = pool.state();
    go.wait();
    let mut failed_gets = 0;
    for h in holders {
        if !h
            .join()
            .map_err(|_| "a holder thread panicked".to_owned())?
        {
            failed_gets += 1;
        }
    }
    ensure(failed_gets == 0 && held.len() == HOLDERS, || {
        format!("{failed_gets} holder(s) could not borrow; ids {held:?}")
    })?;
    ensure(while_held.active == HOLDERS as u32, || {
        format!("expected {HOLDERS} lent while held, state {while_held}")
    })?;
    ensure(
        wait_for_pool(&pool, args.patience(), |s| {
            s.active == 0 && s.idle == MAX && s.total == MAX
        }),
        || format!("after the holders exited, state {}", pool.state()),
    )?;
    let after = pool.state();
    // The same connections, returned rather than closed and replaced.
    let conns = (0..MAX)
        .map(|_| pool.get().context("get after the holders exited failed"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let lent_again: BTreeSet<u64> = conns.iter().map(|c| SimConn::id(c)).collect();
    let closed = db.stats().closed;
    ensure(held.is_subset(&lent_again) && closed == 0, || {
        format!(
            "held {held:?}, lent again {lent_again:?}, {closed} closed: connections were \
             closed instead of returned"
        )
    })?;
    drop(conns);
    close_and_audit(pool, &db)?;
    Ok(format!(
        "{HOLDERS} held at thread exit (1 local, {} thread_local), state while held \
         {while_held}, after exit {after}; database ids {held:?} lent again, none closed",
        HOLDERS - 1
    ))
}
