//! Timed multi-threaded loops: many threads borrowing from one pool for a
//! fixed wall-clock time, counting completed cycles per thread and, when
//! asked, recording every acquire's latency in an HDR histogram.
//!
//! Criterion measures one closure at a time and reports a mean or median;
//! these loops are for what it cannot show: throughput under contention,
//! latency percentiles and how evenly the threads were served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// One run's results.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Completed cycles, per thread.
    pub cycles: Vec<u64>,
    /// CPU time each thread was given during the run (`CLOCK_THREAD_CPUTIME_ID`):
    /// cycles ÷ CPU time separates a pool's unfairness from the scheduler's.
    pub cpu: Vec<Duration>,
    /// Wall-clock time from the common start until the last thread stopped.
    pub elapsed: Duration,
    /// Acquire latencies in nanoseconds, all threads merged (only when the
    /// run timed its acquires).
    pub latency: Option<Histogram<u64>>,
    /// Context switches (voluntary and not) of the whole process during the
    /// run: the load threads' own, plus those of every thread that outlived
    /// the run (the pools' background and `pool-io` threads, `main`).
    /// Divided by [`total`](Self::total): thread hand-offs per loan.
    pub context_switches: u64,
}

impl LoadResult {
    /// Completed cycles, all threads.
    pub fn total(&self) -> u64 {
        self.cycles.iter().sum()
    }

    /// Context switches per completed cycle.
    pub fn switches_per_cycle(&self) -> f64 {
        self.context_switches as f64 / self.total().max(1) as f64
    }

    /// Completed cycles per second, all threads.
    pub fn throughput(&self) -> f64 {
        self.total() as f64 / self.elapsed.as_secs_f64()
    }

    /// Fewest completed cycles of any thread divided by the most (1.0 is
    /// perfectly even; 0.0 means some thread completed none).
    pub fn fairness(&self) -> f64 {
        let min = self.cycles.iter().copied().min().unwrap_or(0);
        let max = self.cycles.iter().copied().max().unwrap_or(0);
        if max == 0 {
            0.0
        } else {
            min as f64 / max as f64
        }
    }

    /// Adds another run of the same shape (same thread count) to this one:
    /// per-thread cycles and times add up, histograms merge.
    pub fn merge(&mut self, other: &LoadResult) {
        if self.cycles.len() < other.cycles.len() {
            self.cycles.resize(other.cycles.len(), 0);
        }
        for (mine, theirs) in self.cycles.iter_mut().zip(&other.cycles) {
            *mine += theirs;
        }
        if self.cpu.len() < other.cpu.len() {
            self.cpu.resize(other.cpu.len(), Duration::ZERO);
        }
        for (mine, theirs) in self.cpu.iter_mut().zip(&other.cpu) {
            *mine += *theirs;
        }
        self.elapsed += other.elapsed;
        match (&mut self.latency, &other.latency) {
            (Some(mine), Some(theirs)) => {
                // Both have the same bounds (see `new_histogram`).
                let _ = mine.add(theirs);
            }
            (None, Some(theirs)) => self.latency = Some(theirs.clone()),
            _ => {}
        }
    }
}

/// CPU time the calling thread has run so far.
/// The calling thread's context switches so far, from
/// `/proc/thread-self/status` (0 where that file does not exist).
fn thread_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .map(|s| switches_in(&s))
        .unwrap_or(0)
}

/// Sums `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of a
/// `/proc/.../status` text.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Every live thread's context switches so far, by thread id.
fn task_switches() -> std::collections::HashMap<String, u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    dir.flatten()
        .filter_map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                switches_in(&status),
            ))
        })
        .collect()
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A histogram for nanosecond latencies from 1 ns to 10 minutes, 3
/// significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// Busy-waits for `d` (a sleep would give the CPU away and cost far more than
/// a microsecond).
#[inline]
pub fn spin_for(d: Duration) {
    if d.is_zero() {
        return;
    }
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The stop flag, alone on its cache line so that the threads' reads of it
/// do not share a line with anything they write.
#[repr(align(128))]
struct StopFlag(AtomicBool);

/// Runs `threads` threads for `run_for`; each builds its worker with
/// `make(thread_index)` (untimed: open a connection there, for example), then
/// all start together and call their worker until told to stop. A worker
/// returns the acquire latency it measured, if it measures one.
fn drive<W>(
    threads: usize,
    run_for: Duration,
    timed: bool,
    make: &(impl Fn(usize) -> W + Sync),
) -> LoadResult
where
    W: FnMut(bool) -> Option<Duration>,
{
    let stop = StopFlag(AtomicBool::new(false));
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (stop, barrier) = (&stop, &barrier);
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn_scoped(s, move || {
                        let mut work = make(i);
                        let mut hist = timed.then(new_histogram);
                        let mut n = 0u64;
                        barrier.wait();
                        let cpu0 = thread_cpu();
                        let switches0 = thread_switches();
                        while !stop.0.load(Ordering::Relaxed) {
                            let latency = work(timed);
                            if let (Some(h), Some(l)) = (hist.as_mut(), latency) {
                                h.saturating_record(l.as_nanos().max(1) as u64);
                            }
                            n += 1;
                        }
                        let switches = thread_switches().saturating_sub(switches0);
                        (
                            n,
                            hist,
                            Instant::now(),
                            thread_cpu().saturating_sub(cpu0),
                            switches,
                        )
                    })
                    .expect("spawn load thread")
            })
            .collect();
        let others0 = task_switches();
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(run_for);
        stop.0.store(true, Ordering::Relaxed);
        let mut result = LoadResult {
            cycles: Vec::with_capacity(threads),
            cpu: Vec::with_capacity(threads),
            elapsed: Duration::ZERO,
            latency: None,
            context_switches: 0,
        };
        let mut end = start;
        for h in handles {
            let (n, hist, stopped, cpu, switches) = h.join().expect("load thread panicked");
            result.context_switches += switches;
            result.cycles.push(n);
            result.cpu.push(cpu);
            end = end.max(stopped);
            if let Some(hist) = hist {
                match &mut result.latency {
                    Some(all) => {
                        let _ = all.add(&hist);
                    }
                    None => result.latency = Some(hist),
                }
            }
        }
        result.elapsed = end - start;
        // The threads that outlived the run (the load threads are gone and
        // counted above; a thread started during the run counts from 0).
        for (tid, now) in task_switches() {
            result.context_switches += now.saturating_sub(others0.get(&tid).copied().unwrap_or(0));
        }
        result
    })
}

/// Borrow cycles against a pool: `threads` threads each loop
/// "acquire, hold for `hold` (busy), release" for `run_for`. With `timed`,
/// every acquire is timed with `Instant` (which costs as much as the fastest
/// acquires: compare throughput from untimed runs only).
pub fn run_cycles<G>(
    threads: usize,
    run_for: Duration,
    hold: Duration,
    timed: bool,
    acquire: &(impl Fn() -> G + Sync),
) -> LoadResult {
    drive(threads, run_for, timed, &|_| {
        move |timed: bool| {
            if timed {
                let t0 = Instant::now();
                let guard = acquire();
                let latency = t0.elapsed();
                spin_for(hold);
                drop(guard);
                Some(latency)
            } else {
                let guard = acquire();
                spin_for(hold);
                drop(guard);
                None
            }
        }
    })
}

/// Opaque operations: `threads` threads each build their own operation with
/// `make(thread_index)` (untimed), then call it in a loop for `run_for`.
pub fn run_ops<W: FnMut()>(
    threads: usize,
    run_for: Duration,
    make: &(impl Fn(usize) -> W + Sync),
) -> LoadResult {
    drive(threads, run_for, false, &|i| {
        let mut op = make(i);
        move |_timed: bool| {
            op();
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop whose every cycle sleeps gives its CPU away once a cycle: the
    /// count must see at least that many switches (and the pool-free
    /// spinning loop far fewer than one a cycle).
    #[test]
    fn context_switches_are_counted_per_cycle() {
        let sleeping = run_ops(2, Duration::from_millis(100), &|_| {
            || std::thread::sleep(Duration::from_micros(200))
        });
        assert!(sleeping.total() > 0);
        assert!(
            sleeping.switches_per_cycle() >= 1.0,
            "{} switches over {} sleeping cycles",
            sleeping.context_switches,
            sleeping.total()
        );
        let spinning = run_ops(1, Duration::from_millis(100), &|_| {
            || spin_for(Duration::from_micros(1))
        });
        assert!(
            spinning.switches_per_cycle() < 0.5,
            "{} switches over {} spinning cycles",
            spinning.context_switches,
            spinning.total()
        );
    }
}
