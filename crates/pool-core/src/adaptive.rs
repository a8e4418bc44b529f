//! [`AdaptiveSize`]: the settings of adaptive sizing (the pool moving its
//! own `max_size` between a floor and a ceiling with the load) and their
//! one check. The decisions are made on the housekeeper thread
//! (`pool/adaptive.rs`); `docs/adaptive.md` describes the algorithm.

use std::time::Duration;

use crate::limits::{check_duration, MIN_COARSE_DURATION};
use crate::Error;

/// Adaptive sizing: the pool raises its `max_size` while it is saturated
/// and borrowers wait, and lowers it while it is mostly idle, between
/// [`floor`](AdaptiveSize::floor) and [`ceiling`](AdaptiveSize::ceiling).
/// Set it with [`Builder::adaptive_size`](crate::Builder::adaptive_size);
/// off by default.
///
/// Every decision looks at a whole [`window`](AdaptiveSize::window): the
/// pool grows by up to [`step`](AdaptiveSize::step) connections when
/// utilization (lent connections over `max_size`) stayed at or above
/// [`grow_above`](AdaptiveSize::grow_above) for the whole window *and* the
/// mean acquire wait over that window exceeded
/// [`target_wait`](AdaptiveSize::target_wait) (or a borrow timed out); it
/// shrinks by up to `step` when utilization stayed at or below
/// [`shrink_below`](AdaptiveSize::shrink_below) with nobody waiting for the
/// whole window. After each change it waits
/// [`cool_down`](AdaptiveSize::cool_down) before the next. It never grows
/// beyond [`server_share`](AdaptiveSize::server_share) of the connection
/// limit given to [`Pool::set_server_capacity`](crate::Pool::set_server_capacity)
/// (the drivers' capacity check gives it).
///
/// ```
/// use pool_core::AdaptiveSize;
/// use std::time::Duration;
///
/// let mut sizing = AdaptiveSize::new(2, 20);
/// sizing.window = Duration::from_secs(5);
/// sizing.cool_down = Duration::from_secs(15);
/// assert!(sizing.validate(4).is_ok());
/// // The pool starts at its max_size, which must lie between floor and ceiling.
/// let err = sizing.validate(40).unwrap_err().to_string();
/// assert!(err.contains("adaptive_size.ceiling"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdaptiveSize {
    /// The smallest `max_size` adaptive sizing sets. 1 to `ceiling`.
    pub floor: u32,
    /// The largest `max_size` adaptive sizing sets. `floor` to
    /// [`MAX_SIZE_LIMIT`](crate::MAX_SIZE_LIMIT).
    pub ceiling: u32,
    /// Utilization (lent connections over `max_size`, 0 to 1) at or above
    /// which the pool counts as saturated. Default 0.8; above
    /// `shrink_below`, at most 1.
    pub grow_above: f64,
    /// The mean acquire wait over a saturated window above which the pool
    /// grows. Default 5 ms; 0 (any wait) to 3650 days.
    pub target_wait: Duration,
    /// Utilization at or below which (with nobody waiting) the pool counts
    /// as oversized. Default 0.3; 0 to below `grow_above`.
    pub shrink_below: f64,
    /// How long a condition must hold before the pool acts on it. Default
    /// 10 s; 10 ms (the pool's clock) to 3650 days. The pool samples its
    /// state 8 times a window.
    pub window: Duration,
    /// How long the pool waits after a change before the next one. Default
    /// 30 s; 0 to 3650 days.
    pub cool_down: Duration,
    /// The most connections one change adds or removes. Default 2; 1 to
    /// `ceiling`.
    pub step: u32,
    /// The share (0 to 1, above 0) of the server's connection limit
    /// ([`Pool::set_server_capacity`](crate::Pool::set_server_capacity))
    /// beyond which the pool does not grow. Default 0.5, the drivers'
    /// default `capacity_share`.
    pub server_share: f64,
}

impl AdaptiveSize {
    /// Adaptive sizing between `floor` and `ceiling`, every other setting at
    /// its default.
    pub fn new(floor: u32, ceiling: u32) -> Self {
        AdaptiveSize {
            floor,
            ceiling,
            grow_above: 0.8,
            target_wait: Duration::from_millis(5),
            shrink_below: 0.3,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(30),
            step: 2,
            server_share: 0.5,
        }
    }

    /// Checks the settings for a pool built with `max_size` (which must lie
    /// between `floor` and `ceiling`): an [`Error::Config`] naming the first
    /// bad one (`adaptive_size.floor`, ...), its value and its range.
    ///
    /// ```
    /// use pool_core::AdaptiveSize;
    ///
    /// let mut sizing = AdaptiveSize::new(2, 8);
    /// sizing.grow_above = 1.5;
    /// let err = sizing.validate(4).unwrap_err().to_string();
    /// assert!(err.contains("adaptive_size.grow_above") && err.contains("1.5"), "{err}");
    /// ```
    pub fn validate(&self, max_size: u32) -> Result<(), Error> {
        let bad = |field: &str, reason: String| {
            Err(Error::config(format!("adaptive_size.{field}"), reason))
        };
        let limit = crate::MAX_SIZE_LIMIT;
        if self.floor == 0 || self.floor > self.ceiling {
            return bad(
                "floor",
                format!(
                    "{} is out of range: use 1 to the ceiling ({})",
                    self.floor, self.ceiling
                ),
            );
        }
        if self.ceiling > limit {
            return bad(
                "ceiling",
                format!(
                    "{} is out of range: use the floor ({}) to {limit}",
                    self.ceiling, self.floor
                ),
            );
        }
        if max_size < self.floor || max_size > self.ceiling {
            let field = if max_size < self.floor {
                "floor"
            } else {
                "ceiling"
            };
            return bad(
                field,
                format!(
                    "the pool starts at max_size {max_size}, outside floor {} to ceiling {}: \
                     set max_size within them",
                    self.floor, self.ceiling
                ),
            );
        }
        if !(self.shrink_below >= 0.0 && self.shrink_below < 1.0) {
            return bad(
                "shrink_below",
                format!(
                    "{} is out of range: use a utilization from 0 to below 1",
                    self.shrink_below
                ),
            );
        }
        if !(self.grow_above > self.shrink_below && self.grow_above <= 1.0) {
            return bad(
                "grow_above",
                format!(
                    "{} is out of range: use a utilization above shrink_below ({}) and at \
                     most 1 (the gap between them keeps the pool from flapping)",
                    self.grow_above, self.shrink_below
                ),
            );
        }
        if !(self.server_share > 0.0 && self.server_share <= 1.0) {
            return bad(
                "server_share",
                format!(
                    "{} is out of range: use a share above 0 and at most 1",
                    self.server_share
                ),
            );
        }
        if self.step == 0 || self.step > self.ceiling {
            return bad(
                "step",
                format!(
                    "{} is out of range: use 1 to the ceiling ({})",
                    self.step, self.ceiling
                ),
            );
        }
        check_duration(
            "adaptive_size.window",
            self.window,
            MIN_COARSE_DURATION,
            "the pool's clock ticks every 1-4 ms",
        )?;
        check_duration(
            "adaptive_size.target_wait",
            self.target_wait,
            Duration::ZERO,
            "",
        )?;
        check_duration(
            "adaptive_size.cool_down",
            self.cool_down,
            Duration::ZERO,
            "",
        )
    }
}
