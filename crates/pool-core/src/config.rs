//! Pool settings as plain data ([`Config`]) and their one validation; the
//! [`Builder`](crate::Builder) fills them in fluently (`pool/builder.rs`),
//! and `limits.rs` holds their accepted ranges.

use std::time::Duration;

use crate::limits::{
    check_duration, check_max_size, check_parallel_connects, range_text, DEFAULT_PARALLEL_CONNECTS,
    MAX_DURATION, MAX_NAME_LEN, MIN_COARSE_DURATION, MIN_TIMEOUT,
};
use crate::{AdaptiveSize, Error, HealthThresholds};

/// Every setting of a pool, as plain data.
///
/// Most users go through [`Pool::builder`](crate::Pool::builder); `Config` exists for programs that
/// load settings from a file or environment and pass them around. The defaults
/// are HikariCP's, except where a setter says otherwise.
///
/// ```
/// use pool_core::Config;
/// use std::time::Duration;
///
/// let mut config = Config::default();
/// config.max_size = 4;
/// config.connection_timeout = Duration::from_secs(2);
/// assert!(config.validate().is_ok());
/// config.min_idle = Some(8);
/// assert!(config.validate().unwrap_err().to_string().contains("min_idle"));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// See [`Builder::name`](crate::Builder::name).
    pub name: Option<String>,
    /// See [`Builder::max_size`](crate::Builder::max_size).
    pub max_size: u32,
    /// See [`Builder::min_idle`](crate::Builder::min_idle).
    pub min_idle: Option<u32>,
    /// See [`Builder::connection_timeout`](crate::Builder::connection_timeout).
    pub connection_timeout: Duration,
    /// See [`Builder::validation_timeout`](crate::Builder::validation_timeout).
    pub validation_timeout: Duration,
    /// See [`Builder::idle_timeout`](crate::Builder::idle_timeout).
    pub idle_timeout: Option<Duration>,
    /// See [`Builder::max_lifetime`](crate::Builder::max_lifetime).
    pub max_lifetime: Option<Duration>,
    /// See [`Builder::keepalive_time`](crate::Builder::keepalive_time).
    pub keepalive_time: Option<Duration>,
    /// See [`Builder::test_on_check_out`](crate::Builder::test_on_check_out).
    pub test_on_check_out: bool,
    /// See [`Builder::alive_bypass_window`](crate::Builder::alive_bypass_window).
    pub alive_bypass_window: Duration,
    /// See [`Builder::leak_detection_threshold`](crate::Builder::leak_detection_threshold).
    pub leak_detection_threshold: Option<Duration>,
    /// See [`Builder::initialization_fail_timeout`](crate::Builder::initialization_fail_timeout).
    pub initialization_fail_timeout: Duration,
    /// See [`Builder::fail_fast`](crate::Builder::fail_fast).
    pub fail_fast: bool,
    /// See [`Builder::fail_when_suspended`](crate::Builder::fail_when_suspended).
    pub fail_when_suspended: bool,
    /// See [`Builder::metrics`](crate::Builder::metrics).
    pub metrics: bool,
    /// See [`Builder::health_thresholds`](crate::Builder::health_thresholds).
    pub health: HealthThresholds,
    /// See [`Builder::reset_in_background`](crate::Builder::reset_in_background); `None` lets the manager decide.
    pub reset_in_background: Option<bool>,
    /// See [`Builder::parallel_connects`](crate::Builder::parallel_connects).
    pub parallel_connects: u32,
    /// See [`Builder::adaptive_size`](crate::Builder::adaptive_size); `None` (the default) keeps
    /// `max_size` where it is set.
    pub adaptive: Option<AdaptiveSize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: None,
            max_size: 10,
            min_idle: None,
            connection_timeout: Duration::from_secs(30),
            validation_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            keepalive_time: None,
            test_on_check_out: true,
            alive_bypass_window: Duration::from_millis(500),
            leak_detection_threshold: None,
            initialization_fail_timeout: Duration::from_secs(1),
            fail_fast: true,
            fail_when_suspended: false,
            metrics: true,
            health: HealthThresholds::default(),
            reset_in_background: None,
            parallel_connects: DEFAULT_PARALLEL_CONNECTS,
            adaptive: None,
        }
    }
}

impl Config {
    /// Checks the settings, returning an error that names the first bad
    /// setting, its value and the accepted range.
    ///
    /// Every setting's range is in `docs/settings.md`: counts, durations
    /// between a floor (what the pool can measure) and [`MAX_DURATION`]
    /// (what its arithmetic can hold), and the [`HealthThresholds`].
    ///
    /// ```
    /// use pool_core::Config;
    /// use std::time::Duration;
    ///
    /// let mut config = Config::default();
    /// config.max_lifetime = Some(Duration::from_micros(100));
    /// let err = config.validate().unwrap_err().to_string();
    /// assert!(err.contains("max_lifetime") && err.contains("100µs") && err.contains("10ms"), "{err}");
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |setting: &str, reason: String| Err(Error::config(setting, reason));
        if let Err(reason) = check_max_size(self.max_size) {
            return bad("max_size", reason);
        }
        if let Some(min) = self.min_idle {
            if min > self.max_size {
                return bad(
                    "min_idle",
                    format!(
                        "{min} is larger than max_size {}: use 0 to {}, or None for max_size",
                        self.max_size, self.max_size
                    ),
                );
            }
        }
        if let Err(reason) = check_parallel_connects(self.parallel_connects) {
            return bad("parallel_connects", reason);
        }
        check_duration(
            "connection_timeout",
            self.connection_timeout,
            MIN_TIMEOUT,
            "try_get() borrows without waiting",
        )?;
        check_duration(
            "validation_timeout",
            self.validation_timeout,
            MIN_TIMEOUT,
            "",
        )?;
        for (name, value) in [
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("keepalive_time", self.keepalive_time),
            ("leak_detection_threshold", self.leak_detection_threshold),
        ] {
            if let Some(value) = value {
                if value < MIN_COARSE_DURATION || value > MAX_DURATION {
                    return bad(
                        name,
                        format!(
                            "{value:?} is out of range: use {}, or None to turn it off \
                             (the pool's clock ticks every 1-4 ms: shorter times round to \
                             nothing)",
                            range_text(MIN_COARSE_DURATION)
                        ),
                    );
                }
            }
        }
        check_duration(
            "alive_bypass_window",
            self.alive_bypass_window,
            Duration::ZERO,
            "",
        )?;
        check_duration(
            "initialization_fail_timeout",
            self.initialization_fail_timeout,
            Duration::ZERO,
            "",
        )?;
        if let (Some(idle), Some(life)) = (self.idle_timeout, self.max_lifetime) {
            if idle >= life {
                return bad(
                    "idle_timeout",
                    format!(
                        "{idle:?} is not shorter than max_lifetime {life:?}: connections would \
                         always reach their lifetime first; lower it or turn it off"
                    ),
                );
            }
        }
        if let (Some(keep), Some(life)) = (self.keepalive_time, self.max_lifetime) {
            if keep >= life {
                return bad(
                    "keepalive_time",
                    format!(
                        "{keep:?} is not shorter than max_lifetime {life:?}: lower it or \
                         turn it off"
                    ),
                );
            }
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
                return bad(
                    "name",
                    format!(
                        "must be 1 to {MAX_NAME_LEN} bytes without control characters \
                         (got {} bytes)",
                        name.len()
                    ),
                );
            }
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate(self.max_size)?;
            if !self.metrics {
                return bad(
                    "adaptive_size",
                    "needs metrics on (it reads the acquire waits they measure): turn metrics \
                     on or adaptive sizing off"
                        .to_owned(),
                );
            }
        }
        self.health.validate()
    }

    /// The minimum number of idle connections once `min_idle`'s default
    /// (`max_size`) is applied.
    pub fn effective_min_idle(&self) -> u32 {
        self.min_idle.unwrap_or(self.max_size).min(self.max_size)
    }
}
