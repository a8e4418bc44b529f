//! Health verdicts: a status, alerts and advice computed over a recent window.
//!
//! The pool keeps a short history of cumulative counters (one sample per
//! housekeeping round, at least every 30 s, plus one per `health()` call).
//! A verdict compares now with the sample closest to one window ago, so it
//! describes the last minute or so, not the pool's whole life.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::clock::Millis;

/// The thresholds behind [`Pool::health`](crate::Pool::health), with their
/// defaults.
///
/// ```
/// use pool_core::HealthThresholds;
/// use std::time::Duration;
///
/// let t = HealthThresholds {
///     window: Duration::from_secs(30),
///     ..HealthThresholds::default()
/// };
/// assert_eq!(t.critical_error_rate, 0.10);
/// ```
///
/// Plain data, meant to be built with `..HealthThresholds::default()`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthThresholds {
    /// How far back a verdict looks. Default: 60 s.
    pub window: Duration,
    /// Error rate (failed borrows / borrows) above which the pool is
    /// Critical. Default: 0.10.
    pub critical_error_rate: f64,
    /// Error rate above which it is at least Warning. Default: 0.05.
    pub warning_error_rate: f64,
    /// Error rate below which it can be Healthy. Default: 0.01.
    pub healthy_error_rate: f64,
    /// Utilization (share of `max_size`'s connection-time that was lent)
    /// above which it is Critical. Default: 0.95.
    pub critical_utilization: f64,
    /// Utilization above which it is at least Warning. Default: 0.80.
    pub warning_utilization: f64,
    /// Utilization below which it can be Healthy. Default: 0.70.
    pub healthy_utilization: f64,
    /// Mean acquire wait above which it is Critical. Default: 10 s.
    pub critical_acquire_wait: Duration,
    /// Mean acquire wait above which it is at least Warning. Default: 5 s.
    pub warning_acquire_wait: Duration,
    /// Mean acquire wait below which it can be Healthy. Default: 1 s.
    pub healthy_acquire_wait: Duration,
    /// Connections older than this are "long-lived" (advice to lower
    /// `max_lifetime`). Default: 1 hour.
    pub long_lived: Duration,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            window: Duration::from_secs(60),
            critical_error_rate: 0.10,
            warning_error_rate: 0.05,
            healthy_error_rate: 0.01,
            critical_utilization: 0.95,
            warning_utilization: 0.80,
            healthy_utilization: 0.70,
            critical_acquire_wait: Duration::from_secs(10),
            warning_acquire_wait: Duration::from_secs(5),
            healthy_acquire_wait: Duration::from_secs(1),
            long_lived: Duration::from_secs(3600),
        }
    }
}

impl HealthThresholds {
    /// Checks the thresholds: the window is 100 ms to 3650 days; each rate
    /// and utilization is a number from 0 to 1; each wait is at most 3650
    /// days; and within each kind, healthy ≤ warning ≤ critical. The error
    /// names the field (`health_thresholds.window`, …), its value and the
    /// accepted range. [`Config::validate`](crate::Config::validate) calls it.
    ///
    /// ```
    /// use pool_core::HealthThresholds;
    ///
    /// assert!(HealthThresholds::default().validate().is_ok());
    /// let t = HealthThresholds { critical_utilization: 2.0, ..HealthThresholds::default() };
    /// let err = t.validate().unwrap_err().to_string();
    /// assert!(err.contains("health_thresholds.critical_utilization") && err.contains("0 to 1"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<(), crate::Error> {
        use crate::limits::{check_duration, MAX_DURATION, MIN_HEALTH_WINDOW};
        check_duration(
            "health_thresholds.window",
            self.window,
            MIN_HEALTH_WINDOW,
            "counters are sampled every 1/64 of the window",
        )?;
        check_duration(
            "health_thresholds.long_lived",
            self.long_lived,
            Duration::ZERO,
            "",
        )?;
        let ratios = [
            (
                "error_rate",
                [
                    self.healthy_error_rate,
                    self.warning_error_rate,
                    self.critical_error_rate,
                ],
            ),
            (
                "utilization",
                [
                    self.healthy_utilization,
                    self.warning_utilization,
                    self.critical_utilization,
                ],
            ),
        ];
        for (kind, values) in ratios {
            for (level, value) in ["healthy", "warning", "critical"].iter().zip(values) {
                if !(0.0..=1.0).contains(&value) {
                    return Err(crate::Error::config(
                        format!("health_thresholds.{level}_{kind}"),
                        format!("{value} is out of range: use a number from 0 to 1"),
                    ));
                }
            }
            check_order(kind, values, |v| format!("{v}"))?;
        }
        let waits = [
            self.healthy_acquire_wait,
            self.warning_acquire_wait,
            self.critical_acquire_wait,
        ];
        for (level, value) in ["healthy", "warning", "critical"].iter().zip(waits) {
            if value > MAX_DURATION {
                return Err(crate::Error::config(
                    format!("health_thresholds.{level}_acquire_wait"),
                    format!("{value:?} is out of range: use 0 to 3650 days (10 years)"),
                ));
            }
        }
        check_order("acquire_wait", waits, |v| format!("{v:?}"))
    }
}

/// Checks healthy ≤ warning ≤ critical, naming the field out of order.
fn check_order<T: PartialOrd + Copy>(
    kind: &str,
    [healthy, warning, critical]: [T; 3],
    show: impl Fn(T) -> String,
) -> Result<(), crate::Error> {
    if warning < healthy {
        return Err(crate::Error::config(
            format!("health_thresholds.warning_{kind}"),
            format!(
                "{} is below healthy_{kind} {}: use healthy ≤ warning ≤ critical",
                show(warning),
                show(healthy)
            ),
        ));
    }
    if critical < warning {
        return Err(crate::Error::config(
            format!("health_thresholds.warning_{kind}"),
            format!(
                "{} is above critical_{kind} {}: use healthy ≤ warning ≤ critical",
                show(warning),
                show(critical)
            ),
        ));
    }
    Ok(())
}

/// The overall verdict, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    /// Error rate, utilization and acquire wait all below their healthy
    /// thresholds.
    Healthy,
    /// Neither healthy nor in warning.
    Fair,
    /// One of them above its warning threshold.
    Warning,
    /// One of them above its critical threshold.
    Critical,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Fair => "fair",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        })
    }
}

/// Something an operator should look at.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Alert {
    /// Utilization above the warning threshold.
    HighUtilization {
        /// The utilization over the window, 0 to 1.
        utilization: f64,
    },
    /// Mean acquire wait above the warning threshold.
    SlowAcquisition {
        /// The mean wait over the window.
        mean_wait: Duration,
    },
    /// Error rate above the warning threshold.
    HighErrorRate {
        /// Failed borrows / borrows over the window.
        error_rate: f64,
    },
    /// Borrowers timed out waiting: the pool ran dry.
    PoolExhausted {
        /// Timeouts in the window.
        timeouts: u64,
    },
    /// Connects failed in the window while the pool was below `max_size`:
    /// the pool cannot open the connections its borrowers may need.
    ConnectFailures {
        /// Failed connects in the window.
        failures: u64,
        /// Open connections now.
        total: u32,
        /// The pool's `max_size`.
        max_size: u32,
        /// The most recent connect error.
        last_error: String,
    },
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alert::HighUtilization { utilization } => {
                write!(f, "high utilization: {:.0} %", utilization * 100.0)
            }
            Alert::SlowAcquisition { mean_wait } => {
                write!(f, "slow acquisition: {mean_wait:?} mean wait")
            }
            Alert::HighErrorRate { error_rate } => {
                write!(
                    f,
                    "high error rate: {:.1} % of borrows failed",
                    error_rate * 100.0
                )
            }
            Alert::PoolExhausted { timeouts } => {
                write!(f, "pool exhausted: {timeouts} borrow(s) timed out")
            }
            Alert::ConnectFailures {
                failures,
                total,
                max_size,
                last_error,
            } => write!(
                f,
                "{failures} connect(s) failed while the pool held {total} of max_size \
                 {max_size} connections; last error: {last_error}"
            ),
        }
    }
}

/// A health verdict from [`Pool::health`](crate::Pool::health).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// What is wrong.
    pub alerts: Vec<Alert>,
    /// What to do about it, with numbers.
    pub recommendations: Vec<String>,
    /// The window the figures cover.
    pub window: Duration,
    /// Failed borrows (timeouts and fail-fast errors) / borrows.
    pub error_rate: f64,
    /// The share of `max_size` × window that connections spent lent.
    pub utilization: f64,
    /// Mean wait of the borrows in the window.
    pub mean_acquire_wait: Duration,
    /// Borrows per second.
    pub arrival_rate: f64,
    /// Mean time a connection stayed lent.
    pub mean_time_lent: Duration,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (over {:?}: utilization {:.0} %, error rate {:.1} %, mean acquire wait {:?})",
            self.status,
            self.window,
            self.utilization * 100.0,
            self.error_rate * 100.0,
            self.mean_acquire_wait
        )?;
        for a in &self.alerts {
            write!(f, "\n  alert: {a}")?;
        }
        for r in &self.recommendations {
            write!(f, "\n  advice: {r}")?;
        }
        Ok(())
    }
}

/// Cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    pub(crate) at: Millis,
    pub(crate) acquired: u64,
    pub(crate) timeouts: u64,
    pub(crate) failures: u64,
    pub(crate) wait_sum_us: u64,
    pub(crate) usage_sum_ms: u64,
    pub(crate) released: u64,
    /// Failed connect attempts.
    pub(crate) connect_errors: u64,
}

/// The recent samples.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Records `now` and returns the baseline to compare it with: the
    /// latest sample at least `window` old, or the oldest one.
    pub(crate) fn push(&mut self, now: Sample, window: Millis) -> Sample {
        let cutoff = now.at.saturating_sub(window);
        let baseline = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at <= cutoff)
            .or(self.samples.front())
            .copied()
            .unwrap_or(now);
        // Keep one sample older than the window, and everything newer.
        while self.samples.len() > 1 && self.samples[1].at <= cutoff {
            self.samples.pop_front();
        }
        // Bound the memory if samples come in faster than needed.
        if self
            .samples
            .back()
            .is_none_or(|b| now.at >= b.at + window / 64)
        {
            self.samples.push_back(now);
        }
        if self.samples.len() > 256 {
            self.samples.pop_front();
        }
        baseline
    }
}

/// The inputs of a verdict, beyond the two samples.
pub(crate) struct Inputs<'a> {
    pub(crate) thresholds: &'a HealthThresholds,
    pub(crate) max_size: u32,
    /// Time (ms) the connections lent right now have spent lent within the
    /// window.
    pub(crate) in_flight_ms: u64,
    pub(crate) server_capacity: Option<u32>,
    /// Age of the oldest open connection.
    pub(crate) oldest: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    /// (location, count, longest) of current leak suspects.
    pub(crate) leaks: Vec<(String, usize, Duration)>,
    /// Open connections now.
    pub(crate) total: u32,
    /// The most recent connect error, while connects are failing.
    pub(crate) last_connect_error: Option<String>,
    /// Connects failed in a row, up to now.
    pub(crate) connect_streak: u64,
}

/// Failed connects in a window, while below `max_size`, that make the pool
/// at least Warning: one failure is a blip, two are a pattern.
const CONNECT_FAILURES_WARNING: u64 = 2;

/// Computes a verdict from the change between `base` and `now`.
pub(crate) fn verdict(base: Sample, now: Sample, i: Inputs<'_>) -> Health {
    let t = i.thresholds;
    let window_ms = now.at.saturating_sub(base.at).max(1);
    let window = Duration::from_millis(window_ms);
    let acquired = now.acquired - base.acquired;
    let timeouts = now.timeouts - base.timeouts;
    let failed = timeouts + (now.failures - base.failures);
    let attempts = acquired + failed;
    let error_rate = if attempts == 0 {
        0.0
    } else {
        failed as f64 / attempts as f64
    };
    let mean_acquire_wait = Duration::from_micros(
        (now.wait_sum_us - base.wait_sum_us)
            .checked_div(acquired)
            .unwrap_or(0),
    );
    let lent_ms = (now.usage_sum_ms - base.usage_sum_ms) + i.in_flight_ms;
    let utilization =
        (lent_ms as f64 / (window_ms as f64 * f64::from(i.max_size.max(1)))).clamp(0.0, 1.0);
    let released = now.released - base.released;
    let mean_time_lent = Duration::from_millis(
        (now.usage_sum_ms - base.usage_sum_ms)
            .checked_div(released)
            .unwrap_or(0),
    );
    let arrival_rate = attempts as f64 / window.as_secs_f64();
    let connect_failures = now.connect_errors.saturating_sub(base.connect_errors);
    // Connects keep failing while the pool is below max_size: it cannot grow
    // to what its borrowers need. With no connection at all, or with
    // borrowers already timing out or waiting long, that is critical.
    let failing = i.last_connect_error.is_some()
        && i.total < i.max_size
        && (connect_failures.max(i.connect_streak) >= CONNECT_FAILURES_WARNING || i.total == 0);
    let starved =
        failing && (i.total == 0 || timeouts > 0 || mean_acquire_wait > t.warning_acquire_wait);

    let status = if starved
        || error_rate > t.critical_error_rate
        || utilization > t.critical_utilization
        || mean_acquire_wait > t.critical_acquire_wait
    {
        HealthStatus::Critical
    } else if failing
        || error_rate > t.warning_error_rate
        || utilization > t.warning_utilization
        || mean_acquire_wait > t.warning_acquire_wait
    {
        HealthStatus::Warning
    } else if error_rate < t.healthy_error_rate
        && utilization < t.healthy_utilization
        && mean_acquire_wait < t.healthy_acquire_wait
    {
        HealthStatus::Healthy
    } else {
        HealthStatus::Fair
    };

    let mut alerts = Vec::new();
    if utilization > t.warning_utilization {
        alerts.push(Alert::HighUtilization { utilization });
    }
    if mean_acquire_wait > t.warning_acquire_wait {
        alerts.push(Alert::SlowAcquisition {
            mean_wait: mean_acquire_wait,
        });
    }
    if error_rate > t.warning_error_rate {
        alerts.push(Alert::HighErrorRate { error_rate });
    }
    if timeouts > 0 {
        alerts.push(Alert::PoolExhausted { timeouts });
    }
    if failing {
        alerts.push(Alert::ConnectFailures {
            failures: connect_failures,
            total: i.total,
            max_size: i.max_size,
            last_error: i.last_connect_error.clone().unwrap_or_default(),
        });
    }

    let mut advice = Vec::new();
    // Little's law: borrowers in the system on average = arrival rate × time
    // in the system. Time spent waiting counts too: a saturated pool caps the
    // time lent, and the wait is the demand it could not serve.
    let needed = arrival_rate * (mean_time_lent + mean_acquire_wait).as_secs_f64();
    let mut suggested = ((needed * 1.5).ceil() as u32).max(1);
    let mut bound = String::new();
    if let Some(cap) = i.server_capacity {
        if suggested > cap {
            suggested = cap;
            bound = format!(", bounded by the server's capacity of {cap}");
        }
    }
    let law = format!(
        "Little's law: {arrival_rate:.1} borrows/s × ({mean_acquire_wait:?} waiting + \
         {mean_time_lent:?} lent) = {needed:.1} connections wanted, × 1.5 headroom{bound}"
    );
    if (utilization > t.warning_utilization || timeouts > 0) && suggested > i.max_size {
        advice.push(format!(
            "raise max_size from {} to {suggested} ({law}); total connections = application \
             instances × max_size must stay within the database's limit",
            i.max_size
        ));
    } else if attempts >= 100 && utilization < 0.3 && suggested * 2 <= i.max_size {
        // (Only with enough borrows in the window to judge the load.)
        advice.push(format!(
            "max_size {} is more than this load needs: about {suggested} would do ({law})",
            i.max_size
        ));
    }
    if mean_acquire_wait > t.healthy_acquire_wait && utilization < 0.5 {
        advice.push(format!(
            "acquiring is slow ({mean_acquire_wait:?} mean) while utilization is low ({:.0} %): \
             the database or the network is slow to open or check connections, not the pool",
            utilization * 100.0
        ));
    }
    if i.oldest > t.long_lived && i.max_lifetime.is_none_or(|l| l > t.long_lived) {
        advice.push(format!(
            "connections live for a long time (oldest: {:?}): lower max_lifetime (now {}) below \
             any limit the database, a proxy or a firewall puts on connection age",
            i.oldest,
            i.max_lifetime
                .map_or("off".to_string(), |l| format!("{l:?}"))
        ));
    }
    if failing {
        advice.push(format!(
            "connects are failing ({connect_failures} in {window:?}), so the pool holds only {} \
             of its max_size {}: check that the database is up and reachable, the credentials, \
             and its connection limits (max_connections, a per-role or per-user limit) against \
             application instances × max_size",
            i.total, i.max_size
        ));
    }
    for (location, count, longest) in &i.leaks {
        advice.push(format!(
            "leaks detected at {location}: {count} connection(s) lent for up to {longest:?}; \
             make sure they are dropped"
        ));
    }
    Health {
        status,
        alerts,
        recommendations: advice,
        window,
        error_rate,
        utilization,
        mean_acquire_wait,
        arrival_rate,
        mean_time_lent,
    }
}
