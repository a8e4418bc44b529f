//! Freezing a whole server from outside: `SIGSTOP` to a process and all of its
//! descendants, `SIGCONT` to thaw them, and the [`Frozen`] guard that thaws on
//! drop.
//!
//! A frozen server keeps its listening socket: the kernel still completes TCP
//! handshakes into the backlog, but nothing reads, writes or answers. For the
//! client this is the worst kind of outage, the one only its own time limits
//! can end (a refused or reset connection at least says so).
//!
//! PostgreSQL backends call `setsid()`, so they are not in the postmaster's
//! process group: the tree is found through `/proc/*/stat` (parent pids). The
//! root is stopped first and seen stopped (state `T`) before its children are
//! looked for, so no child forked during the freeze escapes it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::util::{self, other};

/// How long a process may take to show up as stopped after `SIGSTOP`.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A frozen server: every process of it received `SIGSTOP`. Dropping the
/// guard (or calling [`Frozen::thaw`]) sends `SIGCONT` to them all, so a test
/// that fails while the server is frozen never leaves it stopped.
///
/// The guard does not borrow the server handle: the test may still call
/// `&mut` methods such as `stop()` while it holds one (those thaw the server
/// first anyway).
///
/// ```no_run
/// use pool_testkit::PgServer;
///
/// let pg = PgServer::start().unwrap();
/// {
///     let _frozen = pg.freeze_guard().unwrap();
///     // Connects to pg.url() now hang until their own time limits end them.
/// }
/// // Thawed again.
/// assert_eq!(pg.run_sql("SELECT 1").unwrap(), "1");
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard thaws the server at once"]
pub struct Frozen {
    root_pid: u32,
    dir: PathBuf,
    pids: Vec<u32>,
    thawed: bool,
}

impl Frozen {
    /// The pids that were stopped (the server's main process first).
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Leaves the processes stopped when the guard drops (for `freeze()`).
    pub(crate) fn disarm(mut self) {
        self.thawed = true;
    }

    /// Thaws the server now (what dropping the guard does), reporting errors.
    pub fn thaw(mut self) -> io::Result<()> {
        self.thawed = true;
        thaw_tree(Some(self.root_pid), &self.dir, &self.pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = thaw_tree(Some(self.root_pid), &self.dir, &self.pids);
        }
    }
}

/// Stops `root_pid` and all its descendants; returns the guard that thaws
/// them. `dir` is the server's temporary root: thawing also continues every
/// process whose working directory is inside it.
pub(crate) fn freeze_tree(root_pid: Option<u32>, dir: &Path, what: &str) -> io::Result<Frozen> {
    let root_pid =
        root_pid.ok_or_else(|| other(format!("cannot freeze {what}: it is not running")))?;
    if !util::pid_alive(root_pid) {
        return Err(other(format!(
            "cannot freeze {what}: process {root_pid} is not alive"
        )));
    }
    let mut frozen = Frozen {
        root_pid,
        dir: dir.to_path_buf(),
        pids: Vec::new(),
        thawed: false,
    };
    let mut seen = BTreeSet::new();
    let mut todo = vec![root_pid];
    while !todo.is_empty() {
        for &pid in &todo {
            util::signal(pid, Signal::STOP);
            frozen.pids.push(pid);
            seen.insert(pid);
        }
        for &pid in &todo {
            if !wait_stopped(pid, STOP_WAIT) {
                // The guard thaws what was stopped so far.
                return Err(other(format!(
                    "cannot freeze {what}: process {pid} did not stop within {STOP_WAIT:?}"
                )));
            }
        }
        // Every process stopped so far is really stopped: none of them can
        // fork any more, so the children found now are all there will be.
        let parents: BTreeSet<u32> = seen.clone();
        todo = processes()
            .into_iter()
            .filter(|(pid, ppid)| parents.contains(ppid) && !seen.contains(pid))
            .map(|(pid, _)| pid)
            .collect();
    }
    Ok(frozen)
}

/// Continues `root_pid` and its descendants (if given), `pids` and every process whose
/// working directory is in `dir`. `SIGCONT` to a running process does nothing.
pub(crate) fn thaw_tree(root_pid: Option<u32>, dir: &Path, pids: &[u32]) -> io::Result<()> {
    let mut all: BTreeSet<u32> = pids.iter().copied().collect();
    if let Some(root) = root_pid {
        all.insert(root);
        all.extend(descendants(root));
    }
    all.extend(util::processes_in_dir(dir));
    for pid in &all {
        util::signal(*pid, Signal::CONT);
    }
    let still: Vec<u32> = all.into_iter().filter(|p| state(*p) == Some('T')).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(other(format!(
            "processes {still:?} are still stopped after SIGCONT"
        )))
    }
}

/// Thaws whatever runs under `dir` and below `root_pid` (if any): used before
/// stopping or dropping a server, whether or not it was frozen.
pub(crate) fn thaw_all(root_pid: Option<u32>, dir: &Path) {
    let _ = thaw_tree(root_pid, dir, &[]);
}

/// Every descendant of `root` (children, their children...).
fn descendants(root: u32) -> Vec<u32> {
    let procs = processes();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for (pid, ppid) in &procs {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// `(pid, parent pid)` of every process.
fn processes() -> Vec<(u32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 1..];
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// The state letter of `pid` (`R`, `S`, `T`...), `None` when it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Waits until `pid` is stopped (or gone, or a zombie): true if so in time.
fn wait_stopped(pid: u32, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match state(pid) {
            Some('T' | 't' | 'Z' | 'X') | None => return true,
            Some(_) if start.elapsed() >= timeout => return false,
            Some(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}
