//! Where a database URL's password is, and keeping it out of everything the
//! pool shows: [`redact_url`], [`url_error`], and the rule
//! [`PoolParams::extract`](super::PoolParams::extract) follows before echoing
//! a parameter.
//!
//! Passwords are often pasted into URLs without percent-encoding. A `/`, `?`
//! or `#` in one ends the authority early for a strict (WHATWG) parser, so the
//! rest of the password turns up as a port, a path or query parameters, and
//! from there in error messages. Here the user information ends at the last
//! `@` before the host instead ([`split`]), and anything before the URL's
//! last `@` is treated as possibly secret: it is never echoed.

use std::fmt;

use super::decode;
use crate::Error;

/// Query parameter names whose values are secrets: [`redact_url`] hides them.
const SECRET_PARAMS: &[&str] = &["password", "pass", "passwd", "sslpassword", "pkcs12_pass"];

/// Byte offsets of the parts of a `scheme://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parts {
    /// Just after `://`.
    pub(super) start: usize,
    /// The `@` that ends the user information, if there is one.
    pub(super) at: Option<usize>,
    /// Where the host list ends (the path, query or fragment begins).
    pub(super) authority_end: usize,
    /// The `?` that starts the query, if there is one.
    pub(super) query: Option<usize>,
    /// The `#` that starts the fragment, or the URL's length.
    pub(super) fragment: usize,
}

/// Splits a `scheme://` URL into its parts; `None` without `://`.
///
/// The user information ends at the last `@` of the authority (as WHATWG
/// says) when the authority has one. A `/`, `?` or `#` that cut the
/// authority short was in the password when an `@` follows it in the path
/// (`app:12/cd@db/orders`), or anywhere when what precedes it is not a valid
/// host list (`app:ab?cd@db`: `ab` is no port): the user information then
/// runs to the last `@` before the host.
pub(super) fn split(url: &str) -> Option<Parts> {
    let scheme_end = url.find("://")?;
    if !is_scheme(&url[..scheme_end]) {
        // Not a URL: `app:pw@db?x=http://...` has its first "://" in a query.
        return None;
    }
    let start = scheme_end + 3;
    let rest = &url[start..];
    let delimiter = |s: &str| s.find(['/', '?', '#']).unwrap_or(s.len());
    let head_end = delimiter(rest);
    let head = &rest[..head_end];
    // The last '@' before the first '/', '?' or '#' that follows `from`.
    let last_at_of_segment = |from: usize| {
        let segment_end = from + delimiter(&rest[from..]);
        rest[..segment_end].rfind('@')
    };
    let mut at = match head.rfind('@') {
        Some(i) => Some(i),
        None => match rest[head_end..].find('@') {
            Some(first) if !looks_like_hosts(head) => last_at_of_segment(first + head_end),
            _ => None,
        },
    };
    // An '@' in the path: the '/' before it was in the password.
    loop {
        let host_start = at.map_or(0, |i| i + 1);
        let authority_end = host_start + delimiter(&rest[host_start..]);
        let path = &rest[authority_end..];
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        match path.find('@') {
            Some(i) => at = last_at_of_segment(authority_end + i),
            None => break,
        }
    }
    let host_start = at.map_or(0, |i| i + 1);
    let authority_end = host_start + delimiter(&rest[host_start..]);
    let fragment = rest[authority_end..]
        .find('#')
        .map_or(rest.len(), |i| i + authority_end);
    let query = rest[authority_end..fragment]
        .find('?')
        .map(|i| i + authority_end + start);
    Some(Parts {
        start,
        at: at.map(|i| i + start),
        authority_end: authority_end + start,
        query,
        fragment: fragment + start,
    })
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `host[:port][,host[:port]...]`, hosts possibly `[v6]`, ports all digits.
fn looks_like_hosts(s: &str) -> bool {
    s.split(',').all(|h| {
        let port = match h.strip_prefix('[') {
            Some(v6) => match v6.find(']') {
                Some(i) => &v6[i + 1..],
                None => return false,
            },
            None => match h.find(':') {
                Some(i) => &h[i..],
                None => "",
            },
        };
        port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The user information with `/`, `?`, `#` and `@` percent-encoded, so that a
/// driver's strict parser reads the same user and password as [`split`].
pub(super) fn encode_userinfo(userinfo: &str) -> String {
    let mut out = String::with_capacity(userinfo.len());
    for c in userinfo.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '?' => out.push_str("%3F"),
            '#' => out.push_str("%23"),
            '@' => out.push_str("%40"),
            c => out.push(c),
        }
    }
    out
}

/// Where text stops being possibly secret: everything before the URL's last
/// `@` may be part of a password (0 when there is no `@` after `://`).
pub(super) fn secret_until(url: &str) -> usize {
    let start = split(url).map_or(0, |p| p.start);
    match url.rfind('@') {
        Some(at) if at >= start => at,
        _ => 0,
    }
}

/// Returns `url` with its password replaced by `***`, for logs and error
/// messages.
///
/// Handles the password in the URL's user information (which ends at the
/// last `@` before the host, so a password with an unencoded `/`, `?` or `#`
/// is hidden too), password-like query parameters (`password`, `pass`,
/// `sslpassword`, `pkcs12_pass`), and `password=...` in a `key=value`
/// connection string. When an `@` follows the user information (an `@` in
/// the path or query, or a password the URL's shape leaves ambiguous),
/// everything between `://` and the last `@` is hidden.
///
/// ```
/// use pool_core::url_params::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db/orders"), "postgres://app:***@db/orders");
/// assert_eq!(redact_url("mysql://app:ab/cd?s3cret@db/orders"), "mysql://app:***@db/orders");
/// assert_eq!(
///     redact_url("mysql://app@db/orders?password=s3cret&compress=true"),
///     "mysql://app@db/orders?password=***&compress=true"
/// );
/// assert_eq!(redact_url("host=db user=app password=s3cret"), "host=db user=app password=***");
/// assert_eq!(redact_url("postgres://db/orders"), "postgres://db/orders");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(parts) = split(url) else {
        // Not a URL: a `key=value` string, or something malformed. An `@`
        // may end a password written as `user:password@host`.
        return match url.rfind('@') {
            Some(at) => format!("***{}", redact_key_value(&url[at..])),
            None => redact_key_value(url),
        };
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..parts.start]);
    let last_at = secret_until(url);
    let tail_start = match parts.at {
        Some(at) if at == last_at => {
            // A user name is shown only when it is plainly one: with a `/`,
            // `?`, `#` or `@` in it, it may be a password typed without its
            // `user:` (or with a typo for the colon).
            let plain = |s: &str| !s.contains(['/', '?', '#', '@']);
            let userinfo = &url[parts.start..at];
            match userinfo.find(':') {
                Some(colon) if plain(&userinfo[..colon]) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None if plain(userinfo) => out.push_str(userinfo),
                _ => out.push_str("***"),
            }
            at
        }
        _ if last_at > 0 => {
            out.push_str("***");
            last_at
        }
        _ => parts.start,
    };
    out.push_str(&redact_query(&url[tail_start..]));
    out
}

/// Hides the values of password-like parameters in the query of `tail`
/// (the URL from its host on).
fn redact_query(tail: &str) -> String {
    let (before_fragment, fragment) = match tail.find('#') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    let mut out = String::with_capacity(tail.len());
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
    redact_key_value_with(s, &mut |_| {})
}

/// [`redact_key_value`], handing each secret value found to `found`.
fn redact_key_value_with(s: &str, found: &mut dyn FnMut(&str)) -> String {
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
            found(&s[value_start..i]);
            out.push_str("***");
        } else {
            out.push_str(&s[value_start..i]);
        }
    }
    out
}

/// Everything in `url` that may be a password: what lies between `://` and
/// the last `@` (from the first `:` on, when there is one), the values of
/// password-like query parameters, and `password=` values of a `key=value`
/// string; each as written and percent-decoded.
fn secrets(url: &str) -> Vec<String> {
    let mut raw: Vec<&str> = Vec::new();
    match split(url) {
        Some(parts) => {
            let until = secret_until(url);
            if until > parts.start {
                let region = &url[parts.start..until];
                raw.push(region.split_once(':').map_or(region, |(_, pw)| pw));
            }
            let query_end = parts.fragment;
            if let Some(q) = parts.query {
                for pair in url[q + 1..query_end].split('&') {
                    if let Some((k, v)) = pair.split_once('=') {
                        if is_secret(k) {
                            raw.push(v);
                        }
                    }
                }
            }
        }
        None => {
            if let Some(at) = url.rfind('@') {
                raw.push(&url[..at]);
            }
            let mut found = Vec::new();
            redact_key_value_with(url, &mut |v| found.push(v.to_owned()));
            found.extend(raw.iter().map(|s| (*s).to_owned()));
            return found;
        }
    }
    let mut out: Vec<String> = raw.iter().map(|s| (*s).to_owned()).collect();
    out.extend(raw.iter().filter_map(|s| decode(s).ok()));
    out.extend(raw.iter().map(|s| s.replace('+', " ")));
    out
}

/// Whether `message` quotes `secret`, or any four characters of it in a row.
fn quotes(message: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    match chars.len() {
        0..=2 => false,
        3 => message.contains(secret),
        _ => chars
            .windows(4)
            .any(|w| message.contains(&w.iter().collect::<String>())),
    }
}

/// The error for a URL the database driver cannot parse: names the setting
/// `url`, shows the URL redacted ([`redact_url`]) and the driver's
/// explanation, unless that explanation quotes part of the password (drivers
/// quote what they cannot parse, which is where an unencoded password
/// ends up), in which case it says so instead.
///
/// ```
/// use pool_core::url_params::url_error;
///
/// let err = url_error("mysql://app:s3cret@db:port/orders", &"invalid port number");
/// assert_eq!(
///     err.to_string(),
///     "invalid pool setting `url`: cannot parse `mysql://app:***@db:port/orders`: invalid port number"
/// );
/// let err = url_error("mysql://app:s3cret@db/orders", &"bad value `s3cret`");
/// assert!(!err.to_string().contains("s3cret"), "{err}");
/// ```
pub fn url_error(url: &str, driver_error: &dyn fmt::Display) -> Error {
    let explanation = driver_error.to_string();
    let secrets = secrets(url);
    let explanation = if secrets.iter().any(|s| quotes(&explanation, s)) {
        "the driver's explanation is not shown because it quotes part of the password; \
         percent-encode `/`, `?`, `#`, `@` and `%` in the user name and password \
         (%2F, %3F, %23, %40, %25)"
            .to_owned()
    } else {
        explanation
    };
    Error::config(
        "url",
        format!("cannot parse `{}`: {explanation}", redact_url(url)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("mysql://app:ab/cdX@db/orders", "mysql://app:***@db/orders"),
            (
                "postgres://app:ab?X&x@db/o?a=1",
                "postgres://app:***@db/o?a=1",
            ),
            ("postgres://app:ab#X@db/o#f", "postgres://app:***@db/o#f"),
            ("postgres://u:pw@h/db?a=me@corp", "postgres://***@corp"),
            ("#://", "#://"),
            ("#://a:b@c", "***@c"),
            ("mysql://app'ab/cdX@db/o", "mysql://***@db/o"),
            ("mysql://a/b:cd@db/o", "mysql://***@db/o"),
            ("app:SECRET@db/o?x=http://h", "***@db/o?x=http://h"),
            ("host=h user=me@corp password=x", "***@corp password=***"),
            ("1x://u:p@h", "***@h"),
        ] {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }

    #[test]
    fn userinfo_ends_at_the_last_at_before_the_host() {
        let user = |url: &str| {
            let p = split(url).unwrap();
            p.at.map(|at| url[p.start..at].to_owned())
        };
        assert_eq!(
            user("mysql://app:ab/cd@db/orders").as_deref(),
            Some("app:ab/cd")
        );
        assert_eq!(
            user("pg://app:ab?S&x@db/o?q=1").as_deref(),
            Some("app:ab?S&x")
        );
        assert_eq!(user("pg://app:ab#S@db/o").as_deref(), Some("app:ab#S"));
        assert_eq!(user("pg://app:12/cd@db/o").as_deref(), Some("app:12/cd"));
        assert_eq!(user("pg://a:b?c@d@db/o?x=y@z").as_deref(), Some("a:b?c@d"));
        // '@' in a query value of a URL with a valid host: no user information.
        assert_eq!(user("pg://h:5432/db?application_name=me@corp"), None);
        assert_eq!(user("pg://[::1]:5/db?x=a@b"), None);
        assert_eq!(user("pg://h1:1,h2:2/db"), None);
        let p = split("pg://u:p@h:1/db?x=1#f").unwrap();
        assert_eq!(p.query, Some(15));
        assert_eq!(p.fragment, 19);
        assert_eq!(p.authority_end, 12);
    }

    #[test]
    fn driver_explanations_quoting_the_password_are_hidden() {
        let msg =
            url_error("mysql://u:ab/cdSECRET@h/db", &"invalid port `ab/cdSECRET`").to_string();
        assert!(!msg.contains("SECRET"), "{msg}");
        let msg = url_error("mysql://u:a%2Fb%3FSECRET@h/db", &"bad `a/b?SECRET`").to_string();
        assert!(!msg.contains("SECRET"), "{msg}");
        let msg = url_error("host=h password=SECRETpw", &"bad value SECRETpw").to_string();
        assert!(!msg.contains("SECRET"), "{msg}");
        let msg = url_error("mysql://u:pw@h/db", &"unsupported scheme").to_string();
        assert!(msg.ends_with("unsupported scheme"), "{msg}");
    }
}
