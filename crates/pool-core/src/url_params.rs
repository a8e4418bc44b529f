//! Pool settings carried in a database URL's query string.
//!
//! Many programs receive their database settings as one URL in an environment
//! variable (`DATABASE_URL`). This module lets the pool's settings travel in
//! the same URL, with the parameter names [Prisma] made common, and strips
//! them before the URL reaches the database driver (which would reject them):
//!
//! | URL parameter                 | Pool setting                                             | Value                    |
//! |-------------------------------|----------------------------------------------------------|--------------------------|
//! | `connection_limit`            | [`Builder::max_size`]                                    | whole number, 1 to 65536 |
//! | `pool_timeout`                | [`Builder::connection_timeout`]                          | seconds, 0.001 and up    |
//! | `connect_timeout`             | none: the driver's own connect timeout (see below)       | seconds ≥ 0.001, `0` = none |
//! | `idle_timeout`                | [`Builder::idle_timeout`]                                | seconds ≥ 0.01, `0` = off |
//! | `max_lifetime`                | [`Builder::max_lifetime`]                                | seconds ≥ 0.01, `0` = off |
//! | `min_idle`                    | [`Builder::min_idle`]                                    | whole number             |
//! | `pool_name`                   | [`Builder::name`]                                        | text                     |
//! | `validation_timeout`          | [`Builder::validation_timeout`]                          | seconds, 0.001 and up    |
//! | `keepalive_time`              | [`Builder::keepalive_time`]                              | seconds ≥ 0.01, `0` = off |
//! | `leak_detection_threshold`    | [`Builder::leak_detection_threshold`]                    | seconds ≥ 0.01, `0` = off |
//! | `initialization_fail_timeout` | [`Builder::initialization_fail_timeout`]                 | seconds (`0` allowed)    |
//! | `test_on_check_out`           | [`Builder::test_on_check_out`]                           | `true`/`false`           |
//! | `fail_fast`                   | [`Builder::fail_fast`]                                   | `true`/`false`           |
//!
//! Seconds may have a fraction (`pool_timeout=0.5`) and are at most
//! 315360000 (3650 days); the ranges are checked again when the pool is
//! built (`docs/settings.md` lists them all). Booleans accept
//! `true`/`false`, `1`/`0`, `yes`/`no` and `on`/`off`. Values are
//! percent-decoded (`pool_name=orders%20db`, and `+` is a space).
//!
//! `connect_timeout` is not a pool setting: it limits how long one connection
//! attempt may take, which only the driver can enforce. It is returned in
//! [`PoolParams::connect_timeout`] for the driver crate to apply.
//!
//! A parameter that is neither a pool parameter nor one the driver
//! understands is an error naming it, so that a misspelt setting
//! (`conection_limit`) is never silently ignored. Driver crates pass the list
//! of their driver's parameters to [`PoolParams::extract`].
//!
//! Errors never contain the URL's password: the user information ends at the
//! last `@` before the host (so a password with an unencoded `/`, `?` or `#`
//! is still the password), and nothing written before a URL's last `@` is
//! echoed. Use [`redact_url`] when a URL must be shown, and [`url_error`]
//! for a driver's parse error.
//!
//! [Prisma]: https://www.prisma.io/docs/orm/overview/databases/postgresql#arguments
//! [`Builder::max_size`]: crate::Builder::max_size
//! [`Builder::connection_timeout`]: crate::Builder::connection_timeout
//! [`Builder::idle_timeout`]: crate::Builder::idle_timeout
//! [`Builder::max_lifetime`]: crate::Builder::max_lifetime
//! [`Builder::min_idle`]: crate::Builder::min_idle
//! [`Builder::name`]: crate::Builder::name
//! [`Builder::validation_timeout`]: crate::Builder::validation_timeout
//! [`Builder::keepalive_time`]: crate::Builder::keepalive_time
//! [`Builder::leak_detection_threshold`]: crate::Builder::leak_detection_threshold
//! [`Builder::initialization_fail_timeout`]: crate::Builder::initialization_fail_timeout
//! [`Builder::test_on_check_out`]: crate::Builder::test_on_check_out
//! [`Builder::fail_fast`]: crate::Builder::fail_fast
//!
//! # Example
//!
//! ```
//! use pool_core::url_params::PoolParams;
//! use std::time::Duration;
//!
//! let (url, params) = PoolParams::extract(
//!     "postgres://app:secret@db.internal/orders?connection_limit=8&sslmode=disable&pool_timeout=2.5",
//!     &["sslmode", "application_name"],
//! )?;
//! assert_eq!(url, "postgres://app:secret@db.internal/orders?sslmode=disable");
//! assert_eq!(params.max_size, Some(8));
//! assert_eq!(params.connection_timeout, Some(Duration::from_millis(2500)));
//!
//! let builder = params.apply(pool_core::Pool::builder());
//! assert_eq!(builder.config().max_size, 8);
//! # Ok::<(), pool_core::Error>(())
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use crate::limits::MAX_DURATION;
use crate::{Builder, Error};

mod redaction;

pub use redaction::{redact_url, url_error};

/// Every parameter name [`PoolParams::extract`] takes out of a URL.
///
/// ```
/// assert!(pool_core::url_params::POOL_PARAMS.contains(&"connection_limit"));
/// ```
pub const POOL_PARAMS: &[&str] = &[
    "connection_limit",
    "pool_timeout",
    "connect_timeout",
    "idle_timeout",
    "max_lifetime",
    "min_idle",
    "pool_name",
    "validation_timeout",
    "keepalive_time",
    "leak_detection_threshold",
    "initialization_fail_timeout",
    "test_on_check_out",
    "fail_fast",
];

/// Pool settings read from a database URL; `None` means "not in the URL, keep
/// the builder's value".
///
/// For settings that can be turned off, the inner `Option` is `None` when the
/// URL asked for "off" with `0`.
///
/// ```
/// use pool_core::url_params::PoolParams;
/// use std::time::Duration;
///
/// let (_, params) = PoolParams::extract("mysql://h/db?idle_timeout=0&max_lifetime=900", &[])?;
/// assert_eq!(params.idle_timeout, Some(None)); // explicitly off
/// assert_eq!(params.max_lifetime, Some(Some(Duration::from_secs(900))));
/// assert_eq!(params.keepalive_time, None); // not given
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolParams {
    /// `pool_name`: see [`Builder::name`].
    pub name: Option<String>,
    /// `connection_limit`: see [`Builder::max_size`].
    pub max_size: Option<u32>,
    /// `min_idle`: see [`Builder::min_idle`].
    pub min_idle: Option<u32>,
    /// `pool_timeout`: see [`Builder::connection_timeout`].
    pub connection_timeout: Option<Duration>,
    /// `validation_timeout`: see [`Builder::validation_timeout`].
    pub validation_timeout: Option<Duration>,
    /// `idle_timeout`: see [`Builder::idle_timeout`].
    pub idle_timeout: Option<Option<Duration>>,
    /// `max_lifetime`: see [`Builder::max_lifetime`].
    pub max_lifetime: Option<Option<Duration>>,
    /// `keepalive_time`: see [`Builder::keepalive_time`].
    pub keepalive_time: Option<Option<Duration>>,
    /// `leak_detection_threshold`: see [`Builder::leak_detection_threshold`].
    pub leak_detection_threshold: Option<Option<Duration>>,
    /// `initialization_fail_timeout`: see [`Builder::initialization_fail_timeout`].
    pub initialization_fail_timeout: Option<Duration>,
    /// `test_on_check_out`: see [`Builder::test_on_check_out`].
    pub test_on_check_out: Option<bool>,
    /// `fail_fast`: see [`Builder::fail_fast`].
    pub fail_fast: Option<bool>,
    /// `connect_timeout`: how long one connection attempt may take. Not a pool
    /// setting: the driver crate applies it to its own configuration.
    /// `Some(None)` means the URL asked for no limit (`connect_timeout=0`).
    pub connect_timeout: Option<Option<Duration>>,
}

impl PoolParams {
    /// Takes the pool parameters out of `url`'s query string.
    ///
    /// Returns the URL without them (the other parameters keep their order
    /// and their original encoding; the `?` goes when none is left) and the
    /// settings found. `driver_params` lists the query parameters the driver
    /// understands: any parameter that is in neither list is an error naming
    /// it. A string that is not a `scheme://` URL (a `key=value` connection
    /// string, or a scheme that is not letters, digits, `+`, `-`, `.`) is
    /// returned unchanged with no settings. The user information ends at the
    /// last `@` before the host; a `/`, `?`, `#` or `@` in it is
    /// percent-encoded in the returned URL, so that the driver reads the
    /// same password.
    ///
    /// Errors ([`Error::Config`], naming the parameter) for an unknown
    /// parameter, a malformed value, or a pool parameter given twice. Errors
    /// never contain the URL's password.
    ///
    /// ```
    /// use pool_core::url_params::PoolParams;
    ///
    /// let err = PoolParams::extract("postgres://u:pw@h/db?conection_limit=5", &["sslmode"])
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("conection_limit"), "{err}");
    /// assert!(!err.to_string().contains("pw"));
    ///
    /// let err = PoolParams::extract("postgres://h/db?pool_timeout=soon", &[]).unwrap_err();
    /// assert!(err.to_string().contains("pool_timeout"));
    /// assert!(err.to_string().contains("soon"));
    /// ```
    pub fn extract(url: &str, driver_params: &[&str]) -> Result<(String, PoolParams), Error> {
        let mut params = PoolParams::default();
        let Some(parts) = redaction::split(url) else {
            return Ok((url.to_owned(), params));
        };
        // Text before the URL's last '@' may be part of a password (one
        // with an unencoded '?' makes the rest look like a query): it is
        // never echoed in an error.
        let secret_until = redaction::secret_until(url);
        let query_end = parts.fragment;
        let base_end = parts.query.unwrap_or(query_end);

        let mut kept: Vec<&str> = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        if let Some(q) = parts.query {
            let mut offset = q + 1;
            for pair in url[q + 1..query_end].split('&') {
                let pair_start = offset;
                offset += pair.len() + 1;
                if pair.is_empty() {
                    continue;
                }
                let may_echo = pair_start >= secret_until;
                let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
                let key = decode(raw_key).map_err(|reason| {
                    Error::config(
                        shown_name(raw_key, may_echo),
                        format!("malformed parameter name: {reason}"),
                    )
                })?;
                if let Some(&name) = POOL_PARAMS.iter().find(|&&p| p == key) {
                    if seen.contains(&name) {
                        return Err(Error::config(
                            name,
                            "given more than once in the database URL: keep one",
                        ));
                    }
                    seen.push(name);
                    let shown = if may_echo { raw_value } else { HIDDEN };
                    let value = decode(raw_value).map_err(|reason| {
                        Error::config(name, format!("malformed value `{shown}`: {reason}"))
                    })?;
                    params.set(name, &value, may_echo)?;
                } else if driver_params.iter().any(|&p| p == key) {
                    kept.push(pair);
                } else {
                    return Err(unknown_param(&key, may_echo, driver_params));
                }
            }
        }

        let mut out = String::with_capacity(url.len() + 8);
        out.push_str(&url[..parts.start]);
        if let Some(at) = parts.at {
            out.push_str(&redaction::encode_userinfo(&url[parts.start..at]));
            out.push_str(&url[at..base_end]);
        } else {
            out.push_str(&url[parts.start..base_end]);
        }
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        out.push_str(&url[query_end..]);
        Ok((out, params))
    }

    /// True when the URL carried no pool parameter at all.
    ///
    /// ```
    /// use pool_core::url_params::PoolParams;
    /// let (_, params) = PoolParams::extract("postgres://h/db?sslmode=disable", &["sslmode"])?;
    /// assert!(params.is_empty());
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        *self == PoolParams::default()
    }

    /// Copies every setting found in the URL onto `builder`, leaving the
    /// others as they were. ([`connect_timeout`](PoolParams::connect_timeout)
    /// is not a pool setting and is not applied here.)
    ///
    /// The values are checked when the pool is built, like any other setting.
    ///
    /// ```
    /// use pool_core::{url_params::PoolParams, Pool};
    /// use std::time::Duration;
    ///
    /// let (_, params) = PoolParams::extract("postgres://h/db?connection_limit=3&idle_timeout=0", &[])?;
    /// let builder = params.apply(Pool::builder().connection_timeout(Duration::from_secs(7)));
    /// assert_eq!(builder.config().max_size, 3);
    /// assert_eq!(builder.config().idle_timeout, None);
    /// assert_eq!(builder.config().connection_timeout, Duration::from_secs(7));
    /// # Ok::<(), pool_core::Error>(())
    /// ```
    pub fn apply(&self, builder: Builder) -> Builder {
        let mut b = builder;
        if let Some(name) = &self.name {
            b = b.name(name.clone());
        }
        if let Some(v) = self.max_size {
            b = b.max_size(v);
        }
        if let Some(v) = self.min_idle {
            b = b.min_idle(Some(v));
        }
        if let Some(v) = self.connection_timeout {
            b = b.connection_timeout(v);
        }
        if let Some(v) = self.validation_timeout {
            b = b.validation_timeout(v);
        }
        if let Some(v) = self.idle_timeout {
            b = b.idle_timeout(v);
        }
        if let Some(v) = self.max_lifetime {
            b = b.max_lifetime(v);
        }
        if let Some(v) = self.keepalive_time {
            b = b.keepalive_time(v);
        }
        if let Some(v) = self.leak_detection_threshold {
            b = b.leak_detection_threshold(v);
        }
        if let Some(v) = self.initialization_fail_timeout {
            b = b.initialization_fail_timeout(v);
        }
        if let Some(v) = self.test_on_check_out {
            b = b.test_on_check_out(v);
        }
        if let Some(v) = self.fail_fast {
            b = b.fail_fast(v);
        }
        b
    }

    /// Reads one pool parameter. `may_echo` says whether the value may be
    /// quoted in an error (see [`redaction::secret_until`]).
    fn set(&mut self, name: &'static str, value: &str, may_echo: bool) -> Result<(), Error> {
        let v = Value {
            name,
            text: value,
            shown: if may_echo { value } else { HIDDEN },
        };
        match name {
            "connection_limit" => {
                let n = v.count()?;
                if n == 0 {
                    return Err(Error::config(
                        name,
                        "`0` is out of range: use 1 to 65536 (the pool's max_size)",
                    ));
                }
                self.max_size = Some(n);
            }
            "min_idle" => self.min_idle = Some(v.count()?),
            "pool_name" => {
                if value.is_empty() {
                    return Err(Error::config(
                        name,
                        "must not be empty: omit it or name the pool",
                    ));
                }
                self.name = Some(value.to_owned());
            }
            "pool_timeout" => {
                self.connection_timeout = Some(v.positive_secs(
                    "a pool cannot wait forever; use a large value, or try_get() to not wait",
                )?)
            }
            "validation_timeout" => {
                self.validation_timeout =
                    Some(v.positive_secs("a validation must have a time limit")?)
            }
            "initialization_fail_timeout" => self.initialization_fail_timeout = Some(v.secs()?),
            "connect_timeout" => {
                let d = v.optional_secs()?;
                if d.is_some_and(|d| d < Duration::from_millis(1)) {
                    return Err(Error::config(
                        name,
                        format!(
                            "`{}` is too short: use 0.001 to 315360000 seconds (3650 days), \
                             or 0 for no limit",
                            v.shown
                        ),
                    ));
                }
                self.connect_timeout = Some(d)
            }
            "idle_timeout" => self.idle_timeout = Some(v.optional_secs()?),
            "max_lifetime" => self.max_lifetime = Some(v.optional_secs()?),
            "keepalive_time" => self.keepalive_time = Some(v.optional_secs()?),
            "leak_detection_threshold" => self.leak_detection_threshold = Some(v.optional_secs()?),
            "test_on_check_out" => self.test_on_check_out = Some(v.boolean()?),
            "fail_fast" => self.fail_fast = Some(v.boolean()?),
            other => unreachable!("`{other}` is in POOL_PARAMS but has no parser"),
        }
        Ok(())
    }
}

/// Shown instead of a name or value that may be part of a password.
const HIDDEN: &str = "<not shown: it may be part of the password>";

/// A parameter name fit to appear in an error: names are shown only when
/// they look like names and do not come from where a password may be, so
/// that a password fragment in a malformed URL (an unencoded `?` in the
/// password) is never echoed.
fn shown_name(name: &str, may_echo: bool) -> String {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !may_echo {
        HIDDEN.to_owned()
    } else if looks_like_a_name {
        name.to_owned()
    } else {
        "<unprintable parameter name>".to_owned()
    }
}

/// The most "did you mean" suggestions an unknown parameter gets.
const SUGGESTIONS: usize = 3;

fn unknown_param(key: &str, may_echo: bool, driver_params: &[&str]) -> Error {
    let shown = shown_name(key, may_echo);
    let mut reason = format!("`{shown}` is not a parameter of the pool nor of the database driver");
    let mut close: Vec<(usize, &str)> = POOL_PARAMS
        .iter()
        .chain(driver_params)
        .map(|known| (edit_distance(known, key), *known))
        .filter(|&(d, known)| d <= 2.max(known.len() / 4))
        .collect();
    close.sort();
    close.dedup();
    if may_echo && !close.is_empty() {
        let names: Vec<String> = close
            .iter()
            .take(SUGGESTIONS)
            .map(|(_, n)| format!("`{n}`"))
            .collect();
        let _ = write!(reason, "; did you mean {}?", names.join(" or "));
    } else {
        reason.push_str(
            "; see pool_core::url_params for the pool's parameters, and percent-encode \
             `/`, `?`, `#` and `@` in the password",
        );
    }
    Error::config(shown, reason)
}

/// Levenshtein distance, for "did you mean" hints (names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Percent-decodes a query component (`+` is a space).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("truncated %-escape")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "invalid %-escape")?;
                let byte = u8::from_str_radix(hex, 16).map_err(|_| "invalid %-escape")?;
                out.push(byte);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not valid UTF-8 once decoded".to_owned())
}

/// A pool parameter's decoded value, and how to show it in an error.
struct Value<'a> {
    name: &'static str,
    text: &'a str,
    shown: &'a str,
}

impl Value<'_> {
    fn count(&self) -> Result<u32, Error> {
        let (name, value, shown) = (self.name, self.text, self.shown);
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::config(
                name,
                format!("`{shown}` is not a whole number"),
            ));
        }
        value
            .parse::<u32>()
            .map_err(|_| Error::config(name, format!("`{shown}` is too large: use at most 65536")))
    }

    /// Seconds, possibly with a fraction; zero allowed; at most
    /// [`MAX_DURATION`].
    fn secs(&self) -> Result<Duration, Error> {
        let (name, value, shown) = (self.name, self.text, self.shown);
        let bad = || {
            Error::config(
                name,
                format!("`{shown}` is not a number of seconds (fractions allowed, e.g. `0.5`)"),
            )
        };
        let digits = value.bytes().filter(u8::is_ascii_digit).count();
        let dots = value.bytes().filter(|&b| b == b'.').count();
        if digits == 0 || dots > 1 || digits + dots != value.len() {
            return Err(bad());
        }
        let secs: f64 = value.parse().map_err(|_| bad())?;
        match Duration::try_from_secs_f64(secs) {
            Ok(d) if d <= MAX_DURATION => Ok(d),
            _ => Err(Error::config(
                name,
                format!(
                    "`{shown}` seconds is too long: use at most {} (3650 days)",
                    MAX_DURATION.as_secs()
                ),
            )),
        }
    }

    /// Seconds where `0` means "off" (`None`).
    fn optional_secs(&self) -> Result<Option<Duration>, Error> {
        let d = self.secs()?;
        Ok((!d.is_zero()).then_some(d))
    }

    /// Seconds that must be at least a millisecond.
    fn positive_secs(&self, why: &str) -> Result<Duration, Error> {
        let d = self.secs()?;
        if d < Duration::from_millis(1) {
            return Err(Error::config(
                self.name,
                format!(
                    "`{}` is too short: use 0.001 to {} seconds ({why})",
                    self.shown,
                    MAX_DURATION.as_secs()
                ),
            ));
        }
        Ok(d)
    }

    fn boolean(&self) -> Result<bool, Error> {
        match self.text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(Error::config(
                self.name,
                format!("`{}` is not a boolean (use true or false)", self.shown),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(err: &Error) -> &str {
        match err {
            Error::Config { setting, .. } => setting,
            other => panic!("not a config error: {other:?}"),
        }
    }

    #[test]
    fn no_query_is_unchanged() {
        let (url, p) = PoolParams::extract("postgres://u:p@h:5432/db", &[]).unwrap();
        assert_eq!(url, "postgres://u:p@h:5432/db");
        assert!(p.is_empty());
    }

    #[test]
    fn key_value_strings_are_unchanged() {
        let s = "host=localhost user=postgres connection_limit=5";
        let (url, p) = PoolParams::extract(s, &[]).unwrap();
        assert_eq!(url, s);
        assert!(p.is_empty());
    }

    #[test]
    fn every_parameter_is_read() {
        let (url, p) = PoolParams::extract(
            "postgres://h/db?connection_limit=7&pool_timeout=1.5&connect_timeout=3\
             &idle_timeout=60&max_lifetime=0&min_idle=2&pool_name=orders%20db\
             &validation_timeout=0.25&keepalive_time=30&leak_detection_threshold=0\
             &initialization_fail_timeout=0&test_on_check_out=off&fail_fast=YES",
            &[],
        )
        .unwrap();
        assert_eq!(url, "postgres://h/db");
        assert_eq!(
            p,
            PoolParams {
                name: Some("orders db".into()),
                max_size: Some(7),
                min_idle: Some(2),
                connection_timeout: Some(Duration::from_millis(1500)),
                validation_timeout: Some(Duration::from_millis(250)),
                idle_timeout: Some(Some(Duration::from_secs(60))),
                max_lifetime: Some(None),
                keepalive_time: Some(Some(Duration::from_secs(30))),
                leak_detection_threshold: Some(None),
                initialization_fail_timeout: Some(Duration::ZERO),
                test_on_check_out: Some(false),
                fail_fast: Some(true),
                connect_timeout: Some(Some(Duration::from_secs(3))),
            }
        );
        // Every name in POOL_PARAMS was exercised above.
        for name in POOL_PARAMS {
            assert!([
                "connection_limit",
                "pool_timeout",
                "connect_timeout",
                "idle_timeout",
                "max_lifetime",
                "min_idle",
                "pool_name",
                "validation_timeout",
                "keepalive_time",
                "leak_detection_threshold",
                "initialization_fail_timeout",
                "test_on_check_out",
                "fail_fast"
            ]
            .contains(name));
        }
    }

    #[test]
    fn driver_params_keep_order_and_encoding() {
        let (url, p) = PoolParams::extract(
            "postgresql://u@h/db?sslmode=require&connection_limit=3&application_name=a%20b&options=-c%20x%3Dy#frag",
            &["sslmode", "application_name", "options"],
        )
        .unwrap();
        assert_eq!(
            url,
            "postgresql://u@h/db?sslmode=require&application_name=a%20b&options=-c%20x%3Dy#frag"
        );
        assert_eq!(p.max_size, Some(3));
    }

    #[test]
    fn question_mark_goes_when_nothing_is_left() {
        let (url, _) = PoolParams::extract("mysql://h/db?connection_limit=3&&", &[]).unwrap();
        assert_eq!(url, "mysql://h/db");
        let (url, _) = PoolParams::extract("mysql://h/db?", &[]).unwrap();
        assert_eq!(url, "mysql://h/db");
    }

    #[test]
    fn unknown_parameter_is_named_with_a_hint() {
        let err =
            PoolParams::extract("postgres://h/db?conection_limit=5", &["sslmode"]).unwrap_err();
        assert_eq!(setting(&err), "conection_limit");
        let msg = err.to_string();
        assert!(msg.contains("did you mean `connection_limit`"), "{msg}");
        assert!(!msg.contains("sslmode"), "{msg}");
        let err = PoolParams::extract("postgres://h/db?sslmod=x", &["sslmode"]).unwrap_err();
        assert!(err.to_string().contains("`sslmode`"), "{err}");
    }

    #[test]
    fn malformed_values_name_parameter_and_value() {
        for (q, name, value) in [
            ("connection_limit=ten", "connection_limit", "ten"),
            ("connection_limit=-1", "connection_limit", "-1"),
            ("connection_limit=0", "connection_limit", "0"),
            (
                "connection_limit=99999999999",
                "connection_limit",
                "99999999999",
            ),
            ("min_idle=1.5", "min_idle", "1.5"),
            ("pool_timeout=", "pool_timeout", "``"),
            ("pool_timeout=0", "pool_timeout", "0"),
            ("pool_timeout=1e3", "pool_timeout", "1e3"),
            ("pool_timeout=inf", "pool_timeout", "inf"),
            ("idle_timeout=-5", "idle_timeout", "-5"),
            ("idle_timeout=1.2.3", "idle_timeout", "1.2.3"),
            ("validation_timeout=0.0001", "validation_timeout", "0.0001"),
            ("max_lifetime=1%2G", "max_lifetime", "1%2G"),
            ("fail_fast=maybe", "fail_fast", "maybe"),
            ("test_on_check_out=2", "test_on_check_out", "2"),
            ("pool_name=", "pool_name", ""),
        ] {
            let url = format!("postgres://u:hunter2@h/db?{q}");
            let err = PoolParams::extract(&url, &[]).unwrap_err();
            assert_eq!(setting(&err), name, "{q}");
            let msg = err.to_string();
            assert!(msg.contains(value), "{q}: {msg}");
            assert!(!msg.contains("hunter2"), "{q}: {msg}");
        }
    }

    #[test]
    fn huge_durations_are_rejected() {
        let err = PoolParams::extract(&format!("mysql://h/?pool_timeout=1{}", "0".repeat(30)), &[])
            .unwrap_err();
        assert_eq!(setting(&err), "pool_timeout");
        assert!(err.to_string().contains("too long"));
    }

    #[test]
    fn twice_is_an_error() {
        let err = PoolParams::extract("mysql://h/?min_idle=1&min_idle=2", &[]).unwrap_err();
        assert_eq!(setting(&err), "min_idle");
        assert!(err.to_string().contains("more than once"));
    }

    #[test]
    fn password_fragments_are_never_echoed() {
        // An unencoded '?' in the password is part of the password: the
        // user information ends at the last '@' before the host.
        let (url, p) = PoolParams::extract("postgres://u:pa?ss@h/db?min_idle=1", &[]).unwrap();
        assert_eq!(url, "postgres://u:pa%3Fss@h/db");
        assert_eq!(p.min_idle, Some(1));
        // Where the URL's shape leaves it ambiguous (a port-like password),
        // what comes before the last '@' is never echoed.
        for url in [
            "postgres://u:12?SECRET&x@h/db",
            "postgres://u:12?pool_timeout=SECRET&x@h/db",
            "postgres://u:12?SECRET%zz@h/db",
        ] {
            let msg = PoolParams::extract(url, &[]).unwrap_err().to_string();
            assert!(!msg.contains("SECRET"), "{msg}");
            assert!(msg.contains("not shown"), "{msg}");
        }
    }

    #[test]
    fn encoded_names_are_decoded() {
        let (_, p) = PoolParams::extract("postgres://h/db?connection%5Flimit=4", &[]).unwrap();
        assert_eq!(p.max_size, Some(4));
    }

    #[test]
    fn fractions_of_seconds() {
        let (_, p) =
            PoolParams::extract("postgres://h/db?pool_timeout=.5&idle_timeout=2.", &[]).unwrap();
        assert_eq!(p.connection_timeout, Some(Duration::from_millis(500)));
        assert_eq!(p.idle_timeout, Some(Some(Duration::from_secs(2))));
    }

    #[test]
    fn apply_sets_only_what_was_given() {
        let (_, p) = PoolParams::extract(
            "postgres://h/db?connection_limit=3&keepalive_time=0&fail_fast=false&pool_name=x",
            &[],
        )
        .unwrap();
        let base = crate::Pool::builder()
            .validation_timeout(Duration::from_secs(2))
            .keepalive_time(Some(Duration::from_secs(60)));
        let c = p.apply(base).config().clone();
        assert_eq!(c.max_size, 3);
        assert_eq!(c.keepalive_time, None);
        assert!(!c.fail_fast);
        assert_eq!(c.name.as_deref(), Some("x"));
        assert_eq!(c.validation_timeout, Duration::from_secs(2));
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("pool_timeout", "pool_timeout"), 0);
    }
}
