//! Metrics: counters and distributions cheap enough to leave on, and a
//! snapshot type. The Prometheus text rendering is in `export.rs`.
//!
//! # Recording without slowing the hot path
//!
//! The hot path (borrow, return) records only into the calling thread's own
//! [`Shard`]: counters and histograms that exactly one thread writes, with a
//! relaxed load and a relaxed store (no locked instruction), and that a
//! snapshot reads from every thread and sums. The uncontended borrow records
//! an acquire wait of zero without reading any clock; a borrow that had to
//! scan or wait records the wait it measured anyway. Time lent is measured
//! with the coarse clock the pool reads anyway (millisecond resolution).
//! Rare events (connections opened and closed, timeouts, errors) go to shared
//! atomics and shared histograms.
//!
//! # Histograms
//!
//! [`Histogram`] is log-linear: exact below 16, then 16 buckets per power of
//! two. A quantile is reported as the middle of its bucket, which is within
//! 1/32 (3.2 %) of the true value. A snapshot also folds the log-linear
//! buckets into cumulative counts under the fixed bounds of
//! [`Distribution::BUCKET_BOUNDS`], which Prometheus histograms export.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::types::CloseReason;
use crate::State;

/// Sub-buckets per power of two.
const SUB: usize = 16;
/// Powers of two covered: values up to 2^43 (µs: about 100 days).
const POWERS: usize = 40;
/// Buckets in a histogram.
const BUCKETS: usize = SUB * POWERS;
/// How many fixed bounds [`Distribution::buckets`] counts under.
const LE_BOUNDS: usize = 21;

/// The bucket holding `v`.
#[inline]
fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let p = 63 - v.leading_zeros() as usize; // ≥ 4
    let sub = ((v >> (p - 4)) as usize) & (SUB - 1);
    ((p - 3) * SUB + sub).min(BUCKETS - 1)
}

/// The middle of bucket `b`.
fn bucket_mid(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let p = b / SUB + 3;
    let low = ((SUB + b % SUB) as u64) << (p - 4);
    let width = 1u64 << (p - 4);
    low + width / 2
}

/// A log-linear histogram of `u64` values.
///
/// The count is not stored: a snapshot adds up the buckets, which saves the
/// hot path one store.
pub(crate) struct Histogram {
    /// Inline, not boxed: recording is one load and one store, with no
    /// pointer to follow and no bounds check (`bucket_of` stays in range).
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records `v`; only ever called by the one thread that owns this
    /// histogram, so plain load-and-store suffices (no locked instruction).
    #[inline]
    pub(crate) fn record_owned(&self, v: u64) {
        let bump =
            |a: &AtomicU64, by: u64| a.store(a.load(Ordering::Relaxed) + by, Ordering::Relaxed);
        bump(&self.buckets[bucket_of(v)], 1);
        // Zero (an immediate borrow) changes neither the sum nor the max.
        if v != 0 {
            bump(&self.sum, v);
            if v > self.max.load(Ordering::Relaxed) {
                self.max.store(v, Ordering::Relaxed);
            }
        }
    }

    /// Records `v` from any thread.
    pub(crate) fn record_shared(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Adds this histogram's counts into `into`.
    pub(crate) fn add_to(&self, into: &mut Counts) {
        if into.buckets.is_empty() {
            into.buckets = vec![0; BUCKETS];
        }
        for (acc, b) in into.buckets.iter_mut().zip(self.buckets.iter()) {
            let n = b.load(Ordering::Relaxed);
            *acc += n;
            into.count += n;
        }
        into.sum += self.sum.load(Ordering::Relaxed);
        into.max = into.max.max(self.max.load(Ordering::Relaxed));
    }
}

/// Plain counts of one or more histograms, for computing quantiles.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    buckets: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum: u64,
    max: u64,
}

impl Counts {
    /// The value below which a fraction `q` of the recorded values lie.
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_mid(b).min(self.max);
            }
        }
        self.max
    }

    /// How many recorded values lie below `limit` (in recorded units): the
    /// log-linear buckets lying wholly below it. Exact when `limit` is a
    /// bucket's lower edge; otherwise it leaves out the one bucket that
    /// straddles `limit`, a range of at most 1/32 of it.
    fn count_below(&self, limit: u64) -> u64 {
        let end = bucket_of(limit).min(self.buckets.len());
        self.buckets[..end].iter().sum()
    }

    /// Summarises, with values in units of `unit`.
    pub(crate) fn distribution(&self, unit: Duration) -> Distribution {
        let d = |v: u64| unit.saturating_mul(u32::try_from(v).unwrap_or(u32::MAX));
        // Values are whole units, truncated: a recorded `v` is a time in
        // [v, v + 1) units, so it is within a bound of `limit` units exactly
        // when `v < limit`; a bound that is not a whole number of units
        // rounds down (a count that never overstates).
        let unit_ns = unit.as_nanos().max(1);
        let buckets = Distribution::BUCKET_BOUNDS.map(|bound| {
            let limit = u64::try_from(bound.as_nanos() / unit_ns).unwrap_or(u64::MAX);
            self.count_below(limit)
        });
        let sum_ns = u128::from(self.sum).saturating_mul(unit.as_nanos());
        Distribution {
            count: self.count,
            sum: Duration::from_nanos(u64::try_from(sum_ns).unwrap_or(u64::MAX)),
            buckets,
            mean: if self.count == 0 {
                Duration::ZERO
            } else {
                unit.mul_f64(self.sum as f64 / self.count as f64)
            },
            p50: d(self.quantile(0.50)),
            p95: d(self.quantile(0.95)),
            p99: d(self.quantile(0.99)),
            max: d(self.max),
        }
    }
}

/// What one thread records on the hot path (see the module docs).
pub(crate) struct Shard {
    /// Acquire waits, in microseconds.
    pub(crate) wait: Histogram,
    /// Time lent, in milliseconds.
    pub(crate) usage: Histogram,
}

impl Shard {
    pub(crate) fn new() -> Self {
        Shard {
            wait: Histogram::new(),
            usage: Histogram::new(),
        }
    }
}

/// Counters of rare events, shared by all threads.
pub(crate) struct PoolCounters {
    pub(crate) created: AtomicU64,
    pub(crate) closed: [AtomicU64; CloseReason::COUNT],
    pub(crate) detached: AtomicU64,
    pub(crate) acquire_timeouts: AtomicU64,
    /// Borrowers that got `Error::Connect` (fail fast).
    pub(crate) acquire_failures: AtomicU64,
    pub(crate) validation_failures: AtomicU64,
    pub(crate) connection_errors: AtomicU64,
    pub(crate) leaks_detected: AtomicU64,
    /// Connects that brought a connection after the pool had given up on
    /// them (and that was then closed at once).
    pub(crate) late_connects: AtomicU64,
    /// Changes of `max_size` up and down (by `resize` or adaptive sizing).
    pub(crate) resizes_up: AtomicU64,
    pub(crate) resizes_down: AtomicU64,
    /// Connect durations, in microseconds.
    pub(crate) creation: Histogram,
    /// Connection lifetimes at close, in milliseconds.
    pub(crate) lifetime: Histogram,
}

impl PoolCounters {
    pub(crate) fn new() -> Self {
        PoolCounters {
            created: AtomicU64::new(0),
            closed: std::array::from_fn(|_| AtomicU64::new(0)),
            detached: AtomicU64::new(0),
            acquire_timeouts: AtomicU64::new(0),
            acquire_failures: AtomicU64::new(0),
            validation_failures: AtomicU64::new(0),
            connection_errors: AtomicU64::new(0),
            leaks_detected: AtomicU64::new(0),
            late_connects: AtomicU64::new(0),
            resizes_up: AtomicU64::new(0),
            resizes_down: AtomicU64::new(0),
            creation: Histogram::new(),
            lifetime: Histogram::new(),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A distribution's summary: quantiles for reading, and cumulative bucket
/// counts under fixed bounds for exporting as a Prometheus histogram (which,
/// unlike quantiles, add up across pools and instances).
///
/// ```
/// use pool_core::Distribution;
/// use std::time::Duration;
///
/// let d = Distribution::default();
/// assert_eq!(d.buckets.len(), Distribution::BUCKET_BOUNDS.len());
/// assert_eq!(Distribution::BUCKET_BOUNDS[0], Duration::from_micros(100));
/// assert_eq!(Distribution::BUCKET_BOUNDS[20], Duration::from_secs(3600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Distribution {
    /// How many values were recorded.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
    /// Cumulative counts: `buckets[i]` values were at most
    /// [`BUCKET_BOUNDS[i]`](Distribution::BUCKET_BOUNDS). The counts come
    /// from the log-linear histogram: exact when a bound falls on one of its
    /// bucket edges, otherwise they may leave out values within 1/32 of the
    /// bound (never count values above it). Distributions recorded with
    /// millisecond resolution (time lent, lifetimes) count a value under a
    /// bound only when its whole millisecond is: the sub-millisecond bounds
    /// of those read zero.
    pub buckets: [u64; LE_BOUNDS],
    /// Their mean.
    pub mean: Duration,
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest value.
    pub max: Duration,
}

impl Distribution {
    /// The fixed upper bounds (Prometheus `le`) of [`buckets`](Distribution::buckets),
    /// from a tenth of a millisecond to an hour, in a 1, 2.5, 5 progression
    /// up to ten seconds, then 30 s, 1 min, 5 min, 30 min and 1 h (so that
    /// connection lifetimes and long loans fall in a finite bucket too).
    pub const BUCKET_BOUNDS: [Duration; LE_BOUNDS] = [
        Duration::from_micros(100),
        Duration::from_micros(250),
        Duration::from_micros(500),
        Duration::from_millis(1),
        Duration::from_micros(2_500),
        Duration::from_millis(5),
        Duration::from_millis(10),
        Duration::from_millis(25),
        Duration::from_millis(50),
        Duration::from_millis(100),
        Duration::from_millis(250),
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_millis(2_500),
        Duration::from_secs(5),
        Duration::from_secs(10),
        Duration::from_secs(30),
        Duration::from_secs(60),
        Duration::from_secs(300),
        Duration::from_secs(1_800),
        Duration::from_secs(3_600),
    ];
}

/// Connections closed, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// Idle longer than `idle_timeout`.
    pub idle_timeout: u64,
    /// Reached `max_lifetime`.
    pub max_lifetime: u64,
    /// Broken (`has_broken`, `mark_broken`, or returned during a panic).
    pub broken: u64,
    /// Failed `is_valid`.
    pub failed_validation: u64,
    /// Evicted (`soft_evict_all`, `retain`, shrinking).
    pub evicted: u64,
    /// `reset` failed.
    pub reset_failed: u64,
    /// Closed with the pool.
    pub pool_closed: u64,
    /// Vetoed by a checkout or checkin hook.
    pub rejected: u64,
    /// Taken out of the pool with `detach` (not closed by the pool).
    pub detached: u64,
}

impl ClosedCounts {
    /// The sum over all reasons (detached included).
    pub fn total(&self) -> u64 {
        self.idle_timeout
            + self.max_lifetime
            + self.broken
            + self.failed_validation
            + self.evicted
            + self.reset_failed
            + self.pool_closed
            + self.rejected
            + self.detached
    }

    pub(crate) fn each(&self) -> [(&'static str, u64); 9] {
        [
            (CloseReason::IdleTimeout.label(), self.idle_timeout),
            (CloseReason::MaxLifetime.label(), self.max_lifetime),
            (CloseReason::Broken.label(), self.broken),
            (
                CloseReason::FailedValidation.label(),
                self.failed_validation,
            ),
            (CloseReason::Evicted.label(), self.evicted),
            (CloseReason::ResetFailed.label(), self.reset_failed),
            (CloseReason::PoolClosed.label(), self.pool_closed),
            (CloseReason::Rejected.label(), self.rejected),
            ("detached", self.detached),
        ]
    }
}

/// A snapshot of a pool's metrics, from [`Pool::metrics`](crate::Pool::metrics).
///
/// Counters count since the pool was built; see [`Pool::health`](crate::Pool::health)
/// for a verdict over a recent window.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// The pool's name.
    pub pool: String,
    /// Connections opened.
    pub created: u64,
    /// Connections closed, by reason.
    pub closed: ClosedCounts,
    /// Successful borrows.
    pub acquired: u64,
    /// Connections given back (returned or closed by their borrower).
    pub released: u64,
    /// Borrows that timed out.
    pub acquire_timeouts: u64,
    /// Borrows failed fast because the database was down.
    pub acquire_failures: u64,
    /// Failed validations (on borrow or keepalive).
    pub validation_failures: u64,
    /// Failed connect attempts.
    pub connection_errors: u64,
    /// Loans reported as possible leaks.
    pub leaks_detected: u64,
    /// Connects that finished after the pool had stopped waiting for them
    /// (see [`ManageConnection::connect_limit`](crate::ManageConnection::connect_limit)):
    /// their connections were closed at once.
    pub late_connects: u64,
    /// Times `max_size` was raised, by [`Pool::resize`](crate::Pool::resize)
    /// or by [adaptive sizing](crate::Builder::adaptive_size) (its current
    /// value is [`State::max_size`]).
    pub resizes_up: u64,
    /// Times `max_size` was lowered, by [`Pool::resize`](crate::Pool::resize)
    /// or by [adaptive sizing](crate::Builder::adaptive_size).
    pub resizes_down: u64,
    /// The pool's counts now.
    pub state: State,
    /// Lent connections as a share of `max_size` now, from 0 to 1.
    pub utilization: f64,
    /// How long borrowers waited for a connection (an immediate borrow counts
    /// as zero).
    pub acquire_wait: Distribution,
    /// How long connections stayed lent (millisecond resolution).
    pub usage: Distribution,
    /// How long opening a connection took.
    pub creation: Distribution,
    /// How long closed connections had lived (millisecond resolution).
    pub lifetime: Distribution,
}

/// The metric families written apart from the tables (connections opened,
/// closed by reason, utilization as a ratio): (name, help). The rest are in
/// [`Metrics::counter_table`], [`Metrics::gauge_table`] and
/// [`Metrics::distribution_table`]: one list of names for the Prometheus
/// text and the `metrics` facade.
pub(crate) const CREATED: (&str, &str) = ("pool_connections_created_total", "Connections opened.");
pub(crate) const CLOSED: (&str, &str) = (
    "pool_connections_closed_total",
    "Connections closed, by reason.",
);
pub(crate) const UTILIZATION: (&str, &str) = (
    "pool_utilization_ratio",
    "Lent connections as a share of max_size.",
);

impl Metrics {
    /// The plain counters: (name, help, value).
    pub(crate) fn counter_table(&self) -> [(&'static str, &'static str, u64); 9] {
        [
            (
                "pool_connections_acquired_total",
                "Successful borrows.",
                self.acquired,
            ),
            (
                "pool_connections_released_total",
                "Connections given back.",
                self.released,
            ),
            (
                "pool_acquire_timeouts_total",
                "Borrows that timed out.",
                self.acquire_timeouts,
            ),
            (
                "pool_acquire_failures_total",
                "Borrows failed fast while the database was down.",
                self.acquire_failures,
            ),
            (
                "pool_validation_failures_total",
                "Failed connection validations.",
                self.validation_failures,
            ),
            (
                "pool_connection_errors_total",
                "Failed connect attempts.",
                self.connection_errors,
            ),
            (
                "pool_leaks_detected_total",
                "Loans reported as possible leaks.",
                self.leaks_detected,
            ),
            (
                "pool_resizes_up_total",
                "Times max_size was raised (resize or adaptive sizing).",
                self.resizes_up,
            ),
            (
                "pool_resizes_down_total",
                "Times max_size was lowered (resize or adaptive sizing).",
                self.resizes_down,
            ),
        ]
    }

    /// The gauges of the pool's state: (name, help, value).
    pub(crate) fn gauge_table(&self) -> [(&'static str, &'static str, u32); 6] {
        let s = &self.state;
        [
            ("pool_connections_total", "Open connections.", s.total),
            ("pool_connections_idle", "Idle connections.", s.idle),
            ("pool_connections_active", "Lent connections.", s.active),
            ("pool_connections_waiting", "Borrowers waiting.", s.waiting),
            ("pool_connections_max", "The pool's max_size.", s.max_size),
            ("pool_connections_min", "The pool's min_idle.", s.min_idle),
        ]
    }

    /// The distributions, in seconds: (name, help, distribution).
    pub(crate) fn distribution_table(&self) -> [(&'static str, &'static str, &Distribution); 4] {
        [
            (
                "pool_acquire_seconds",
                "Time borrowers waited for a connection.",
                &self.acquire_wait,
            ),
            (
                "pool_usage_seconds",
                "Time connections stayed lent.",
                &self.usage,
            ),
            (
                "pool_connection_create_seconds",
                "Time taken to open a connection.",
                &self.creation,
            ),
            (
                "pool_connection_lifetime_seconds",
                "Age of connections when closed.",
                &self.lifetime,
            ),
        ]
    }
}

impl Metrics {
    /// Publishes the snapshot through the `metrics` crate facade (feature
    /// `metrics`), all labelled `pool = <name>`, under the same names as
    /// [`render_prometheus`](Metrics::render_prometheus): counters as
    /// absolute values, gauges, and for each time distribution `<name>`:
    ///
    /// - gauges `<name>{quantile="0.5"|"0.95"|"0.99"|"1"}`, in seconds;
    /// - counters `<name>_bucket{le="…"}` (cumulative, under the bounds of
    ///   [`Distribution::BUCKET_BOUNDS`] and `+Inf`) and `<name>_count`, and a
    ///   gauge `<name>_sum` in seconds: the series of a Prometheus histogram,
    ///   which PromQL's `histogram_quantile` reads and which add up across
    ///   pools and instances.
    ///
    /// Why not the facade's `histogram!`: it takes individual samples, to
    /// be bucketed by the exporter, while the pool hands over cumulative
    /// snapshots, again on every housekeeping round and every
    /// [`Pool::metrics`](crate::Pool::metrics) call. Recording a snapshot
    /// as samples would count the same values again on every call, and
    /// replaying only the new counts would need state per pool and could
    /// only replay bucket bounds, not the values. So the buckets go out as
    /// what they are: cumulative counters (exported with the `counter` type
    /// rather than as one `histogram` family, which the facade cannot
    /// express).
    ///
    /// The pool calls it on every housekeeping round (at most 30 s apart) and
    /// on every [`Pool::metrics`](crate::Pool::metrics) call.
    #[cfg(feature = "metrics")]
    pub fn publish(&self) {
        use metrics::{counter, gauge};
        let pool = self.pool.clone();
        counter!(CREATED.0, "pool" => pool.clone()).absolute(self.created);
        for (name, _, v) in self.counter_table() {
            counter!(name, "pool" => pool.clone()).absolute(v);
        }
        for (reason, v) in self.closed.each() {
            counter!(CLOSED.0, "pool" => pool.clone(), "reason" => reason).absolute(v);
        }
        for (name, _, v) in self.gauge_table() {
            gauge!(name, "pool" => pool.clone()).set(f64::from(v));
        }
        gauge!(UTILIZATION.0, "pool" => pool.clone()).set(self.utilization);
        for (name, _, d) in self.distribution_table() {
            for (q, v) in [
                ("0.5", d.p50),
                ("0.95", d.p95),
                ("0.99", d.p99),
                ("1", d.max),
            ] {
                gauge!(name, "pool" => pool.clone(), "quantile" => q).set(v.as_secs_f64());
            }
            let bucket = format!("{name}_bucket");
            for (bound, n) in Distribution::BUCKET_BOUNDS.iter().zip(d.buckets) {
                let le = bound.as_secs_f64().to_string();
                counter!(bucket.clone(), "pool" => pool.clone(), "le" => le).absolute(n);
            }
            counter!(bucket, "pool" => pool.clone(), "le" => "+Inf").absolute(d.count);
            counter!(format!("{name}_count"), "pool" => pool.clone()).absolute(d.count);
            gauge!(format!("{name}_sum"), "pool" => pool.clone()).set(d.sum.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_mid_is_close() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 30, u64::MAX / 4]) {
            let b = bucket_of(v);
            assert!(b >= last, "bucket of {v} went back");
            last = b;
            let mid = bucket_mid(b) as f64;
            if v >= 16 && b < BUCKETS - 1 {
                assert!(
                    (mid - v as f64).abs() / v as f64 <= 1.0 / 32.0 + 1e-9,
                    "{v} -> {mid}"
                );
            }
        }
    }

    #[test]
    fn quantiles_of_a_known_input_are_within_five_percent() {
        let h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record_owned(v);
        }
        let mut c = Counts::default();
        h.add_to(&mut c);
        for (q, want) in [(0.5, 5000.0), (0.95, 9500.0), (0.99, 9900.0)] {
            let got = c.quantile(q) as f64;
            assert!((got - want).abs() / want <= 0.05, "q{q}: {got} vs {want}");
        }
        assert_eq!(c.quantile(1.0), 10_000);
        let d = c.distribution(Duration::from_micros(1));
        assert_eq!(d.count, 10_000);
        assert_eq!(d.max, Duration::from_micros(10_000));
        assert_eq!(d.mean, Duration::from_nanos(5_000_500));
    }

    #[test]
    fn cumulative_buckets_count_whole_units_below_each_bound() {
        let bound = |d: Duration| {
            Distribution::BUCKET_BOUNDS
                .iter()
                .position(|b| *b == d)
                .unwrap()
        };
        // Microseconds: a recorded 1000 is a time in [1000, 1001), above 1 ms.
        let h = Histogram::new();
        for (v, n) in [(50u64, 10), (1000, 5), (2000, 5)] {
            for _ in 0..n {
                h.record_shared(v);
            }
        }
        let mut c = Counts::default();
        h.add_to(&mut c);
        let d = c.distribution(Duration::from_micros(1));
        assert_eq!(d.buckets[bound(Duration::from_micros(100))], 10);
        assert_eq!(d.buckets[bound(Duration::from_millis(1))], 10);
        assert_eq!(d.buckets[bound(Duration::from_micros(2_500))], 20);
        assert_eq!(d.buckets[bound(Duration::from_secs(3_600))], 20);
        assert_eq!(d.sum, Duration::from_micros(10 * 50 + 5 * 1000 + 5 * 2000));
        assert!(d.buckets.windows(2).all(|w| w[0] <= w[1]));

        // Milliseconds: sub-millisecond bounds read zero, a recorded 0 is
        // under 1 ms, a recorded 1 under 2.5 ms.
        let h = Histogram::new();
        for v in [0u64, 0, 0, 1, 1, 700] {
            h.record_shared(v);
        }
        let mut c = Counts::default();
        h.add_to(&mut c);
        let d = c.distribution(Duration::from_millis(1));
        assert_eq!(d.buckets[bound(Duration::from_micros(500))], 0);
        assert_eq!(d.buckets[bound(Duration::from_millis(1))], 3);
        assert_eq!(d.buckets[bound(Duration::from_micros(2_500))], 5);
        assert_eq!(d.buckets[bound(Duration::from_millis(500))], 5);
        assert_eq!(d.buckets[bound(Duration::from_secs(1))], 6);
        assert_eq!(d.sum, Duration::from_millis(702));

        // Nothing recorded: all zero.
        let d = Counts::default().distribution(Duration::from_micros(1));
        assert_eq!(d.buckets, [0; LE_BOUNDS]);
    }
}
