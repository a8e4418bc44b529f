//! Pool settings carried in a database URL's query string.
//!
//! Many programs receive their database settings as one URL in an environment
//! variable (`DATABASE_URL`). This module lets the pool's settings travel in
//! the same URL, with the parameter names [Prisma] made common, and strips
//! them before the URL reaches the database driver (which would reject them):
//!
//! | URL parameter                 | Pool setting                                             | Value                    |
//! |-------------------------------|----------------------------------------------------------|--------------------------|
//! | `connection_limit`            | [`Builder::max_size`]                                    | whole number ≥ 1         |
//! | `pool_timeout`                | [`Builder::connection_timeout`]                          | seconds > 0              |
//! | `connect_timeout`             | none: the driver's own connect timeout (see below)       | seconds, `0` = none      |
//! | `idle_timeout`                | [`Builder::idle_timeout`]                                | seconds, `0` = off       |
//! | `max_lifetime`                | [`Builder::max_lifetime`]                                | seconds, `0` = off       |
//! | `min_idle`                    | [`Builder::min_idle`]                                    | whole number             |
//! | `pool_name`                   | [`Builder::name`]                                        | text                     |
//! | `validation_timeout`          | [`Builder::validation_timeout`]                          | seconds > 0              |
//! | `keepalive_time`              | [`Builder::keepalive_time`]                              | seconds, `0` = off       |
//! | `leak_detection_threshold`    | [`Builder::leak_detection_threshold`]                    | seconds, `0` = off       |
//! | `initialization_fail_timeout` | [`Builder::initialization_fail_timeout`]                 | seconds (`0` allowed)    |
//! | `test_on_check_out`           | [`Builder::test_on_check_out`]                           | `true`/`false`           |
//! | `fail_fast`                   | [`Builder::fail_fast`]                                   | `true`/`false`           |
//!
//! Seconds may have a fraction (`pool_timeout=0.5`). Booleans accept
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
//! Errors never contain the URL's password; use [`redact_url`] when a URL
//! must be shown.
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

use crate::{Builder, Error};

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

/// Query parameter names whose values are secrets: [`redact_url`] hides them.
const SECRET_PARAMS: &[&str] = &["password", "pass", "passwd", "sslpassword", "pkcs12_pass"];

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
    /// it. A string without `://` (for example a `key=value` connection
    /// string) is returned unchanged with no settings.
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
        let Some(scheme_end) = url.find("://") else {
            return Ok((url.to_owned(), params));
        };
        // Split off the fragment, then the query (WHATWG order: the first
        // '?' after the authority starts the query; the authority ends at the
        // first '/', '?' or '#').
        let (before_fragment, fragment) = match url.find('#') {
            Some(i) => (&url[..i], &url[i..]),
            None => (url, ""),
        };
        let rest = &before_fragment[scheme_end + 3..];
        let query_start = rest.find('?').map(|i| i + scheme_end + 3);
        let Some(query_start) = query_start else {
            return Ok((url.to_owned(), params));
        };
        let base = &before_fragment[..query_start];
        let query = &before_fragment[query_start + 1..];

        let mut kept: Vec<&str> = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        for pair in query.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value) = match pair.find('=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, ""),
            };
            let key = decode(raw_key).map_err(|reason| {
                Error::config(
                    shown_name(raw_key),
                    format!("malformed parameter name: {reason}"),
                )
            })?;
            if let Some(&name) = POOL_PARAMS.iter().find(|&&p| p == key) {
                if seen.contains(&name) {
                    return Err(Error::config(
                        name,
                        "given more than once in the database URL",
                    ));
                }
                seen.push(name);
                let value = decode(raw_value).map_err(|reason| {
                    Error::config(name, format!("malformed value `{raw_value}`: {reason}"))
                })?;
                params.set(name, &value)?;
            } else if driver_params.iter().any(|&p| p == key) {
                kept.push(pair);
            } else {
                return Err(unknown_param(&key, driver_params));
            }
        }

        let mut out = String::with_capacity(url.len());
        out.push_str(base);
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        out.push_str(fragment);
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

    fn set(&mut self, name: &'static str, value: &str) -> Result<(), Error> {
        match name {
            "connection_limit" => {
                let n = parse_count(name, value)?;
                if n == 0 {
                    return Err(Error::config(name, "`0` is not allowed: use at least 1"));
                }
                self.max_size = Some(n);
            }
            "min_idle" => self.min_idle = Some(parse_count(name, value)?),
            "pool_name" => {
                if value.is_empty() {
                    return Err(Error::config(name, "must not be empty"));
                }
                self.name = Some(value.to_owned());
            }
            "pool_timeout" => {
                self.connection_timeout = Some(parse_positive_secs(
                    name,
                    value,
                    "a pool cannot wait forever; use a large value, or try_get() to not wait",
                )?)
            }
            "validation_timeout" => {
                self.validation_timeout = Some(parse_positive_secs(
                    name,
                    value,
                    "a validation must have a time limit",
                )?)
            }
            "initialization_fail_timeout" => {
                self.initialization_fail_timeout = Some(parse_secs(name, value)?)
            }
            "connect_timeout" => self.connect_timeout = Some(parse_optional_secs(name, value)?),
            "idle_timeout" => self.idle_timeout = Some(parse_optional_secs(name, value)?),
            "max_lifetime" => self.max_lifetime = Some(parse_optional_secs(name, value)?),
            "keepalive_time" => self.keepalive_time = Some(parse_optional_secs(name, value)?),
            "leak_detection_threshold" => {
                self.leak_detection_threshold = Some(parse_optional_secs(name, value)?)
            }
            "test_on_check_out" => self.test_on_check_out = Some(parse_bool(name, value)?),
            "fail_fast" => self.fail_fast = Some(parse_bool(name, value)?),
            other => unreachable!("`{other}` is in POOL_PARAMS but has no parser"),
        }
        Ok(())
    }
}

/// Returns `url` with its password replaced by `***`, for logs and error
/// messages.
///
/// Handles the password in the URL's user information, password-like query
/// parameters (`password`, `pass`, `sslpassword`, `pkcs12_pass`), and
/// `password=...` in a `key=value` connection string.
///
/// ```
/// use pool_core::url_params::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db/orders"), "postgres://app:***@db/orders");
/// assert_eq!(
///     redact_url("mysql://app@db/orders?password=s3cret&compress=true"),
///     "mysql://app@db/orders?password=***&compress=true"
/// );
/// assert_eq!(redact_url("host=db user=app password=s3cret"), "host=db user=app password=***");
/// assert_eq!(redact_url("postgres://db/orders"), "postgres://db/orders");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_key_value(url);
    };
    let after_scheme = scheme_end + 3;
    let rest = &url[after_scheme..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..after_scheme]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_len..];
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => (&tail[..i], &tail[i..]),
        None => (tail, ""),
    };
    match before_fragment.find('?') {
        Some(q) => {
            out.push_str(&before_fragment[..=q]);
            let query = &before_fragment[q + 1..];
            let mut first = true;
            for pair in query.split('&') {
                if !first {
                    out.push('&');
                }
                first = false;
                match pair.find('=') {
                    Some(eq) if is_secret(&pair[..eq]) => {
                        out.push_str(&pair[..=eq]);
                        out.push_str("***");
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(before_fragment),
    }
    out.push_str(fragment);
    out
}

fn is_secret(raw_key: &str) -> bool {
    let key = decode(raw_key).unwrap_or_default();
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(&key))
}

/// Redacts `password=...` in a libpq-style `key=value` string (values may be
/// single-quoted with backslash escapes).
fn redact_key_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < s.len() {
        // Copy whitespace.
        if bytes[i].is_ascii_whitespace() {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        // A key runs to '=' or whitespace.
        let key_start = i;
        while i < s.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        out.push_str(key);
        // Allow spaces around '='.
        let mut j = i;
        while j < s.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= s.len() || bytes[j] != b'=' {
            continue;
        }
        out.push_str(&s[i..=j]);
        i = j + 1;
        while i < s.len() && bytes[i].is_ascii_whitespace() {
            out.push(bytes[i] as char);
            i += 1;
        }
        // The value: quoted or up to the next whitespace.
        let value_start = i;
        if i < s.len() && bytes[i] == b'\'' {
            i += 1;
            while i < s.len() && bytes[i] != b'\'' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(s.len());
        } else {
            while i < s.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        if SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(key)) {
            out.push_str("***");
        } else {
            out.push_str(&s[value_start..i]);
        }
    }
    out
}

/// A parameter name fit to appear in an error: names are shown only when
/// they look like names, so that a password fragment in a malformed URL
/// (an unencoded `?` in the password) is never echoed.
fn shown_name(name: &str) -> String {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if looks_like_a_name {
        name.to_owned()
    } else {
        "<unprintable parameter name>".to_owned()
    }
}

fn unknown_param(key: &str, driver_params: &[&str]) -> Error {
    let mut reason =
        String::from("unknown parameter in the database URL: it is neither a pool parameter (");
    reason.push_str(&POOL_PARAMS.join(", "));
    reason.push(')');
    if driver_params.is_empty() {
        reason.push_str(" nor a parameter of the database driver");
    } else {
        let _ = write!(
            reason,
            " nor one the driver understands ({})",
            driver_params.join(", ")
        );
    }
    if let Some(close) = POOL_PARAMS
        .iter()
        .chain(driver_params)
        .find(|known| edit_distance(known, key) <= 2)
    {
        let _ = write!(reason, "; did you mean `{close}`?");
    }
    Error::config(shown_name(key), reason)
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

fn parse_count(name: &str, value: &str) -> Result<u32, Error> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::config(
            name,
            format!("`{value}` is not a whole number"),
        ));
    }
    value
        .parse::<u32>()
        .map_err(|_| Error::config(name, format!("`{value}` is too large")))
}

/// Seconds, possibly with a fraction; zero allowed.
fn parse_secs(name: &str, value: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::config(
            name,
            format!("`{value}` is not a number of seconds (fractions allowed, e.g. `0.5`)"),
        )
    };
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let dots = value.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != value.len() {
        return Err(bad());
    }
    let secs: f64 = value.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::config(name, format!("`{value}` seconds is too long")))
}

/// Seconds where `0` means "off" (`None`).
fn parse_optional_secs(name: &str, value: &str) -> Result<Option<Duration>, Error> {
    let d = parse_secs(name, value)?;
    Ok((!d.is_zero()).then_some(d))
}

/// Seconds that must be above zero.
fn parse_positive_secs(name: &str, value: &str, why: &str) -> Result<Duration, Error> {
    let d = parse_secs(name, value)?;
    if d < Duration::from_millis(1) {
        return Err(Error::config(
            name,
            format!("`{value}` is too short: use at least 0.001 ({why})"),
        ));
    }
    Ok(d)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::config(
            name,
            format!("`{value}` is not a boolean (use true or false)"),
        )),
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
        assert!(msg.contains("sslmode"), "{msg}");
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
        // An unencoded '?' in the password makes the rest look like a query.
        let err = PoolParams::extract("postgres://u:pa?ss@h/db", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("ss@h"), "{msg}");
        assert!(msg.contains("unprintable"), "{msg}");
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
    fn redaction() {
        for (input, expected) in [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:p%40w@h:5/db?x=1",
                "postgres://u:***@h:5/db?x=1",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h", "postgres://h"),
            ("mysql://u:a@b@h/db", "mysql://u:***@h/db"),
            (
                "postgres://h/db?user=u&password=pw&sslpassword=x#f",
                "postgres://h/db?user=u&password=***&sslpassword=***#f",
            ),
            (
                "user=u password='a b\\' c' host=h",
                "user=u password=*** host=h",
            ),
            (
                "user=u password = pw host=h",
                "user=u password = *** host=h",
            ),
        ] {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("pool_timeout", "pool_timeout"), 0);
    }
}
