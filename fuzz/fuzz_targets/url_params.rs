//! `PoolParams::extract`, `redact_url` and `url_error` on any string: no
//! panic, whatever `extract` accepts is applied and validated, and a
//! `SECRET` written before the URL's last `@` (where a password may be) never
//! shows in an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_core::url_params::{redact_url, url_error, PoolParams};

/// A driver's parameter list (PostgreSQL's, shortened).
const DRIVER: &[&str] = &["sslmode", "application_name", "options", "password", "user"];

fuzz_target!(|data: &[u8]| {
    let url = String::from_utf8_lossy(data);
    let secret_hidden = secret_before_last_at(&url);
    match PoolParams::extract(&url, DRIVER) {
        Ok((_, params)) => {
            let builder = params.apply(pool_core::Pool::builder());
            let _ = builder.config().validate();
        }
        Err(e) => {
            if secret_hidden {
                let msg = format!("{e} {e:?}");
                assert!(!msg.contains("SECRET"), "{url:?}: {msg}");
            }
        }
    }
    let redacted = redact_url(&url);
    let err = url_error(&url, &"driver says no");
    if secret_hidden {
        assert!(!redacted.contains("SECRET"), "{url:?}: {redacted}");
        assert!(!err.to_string().contains("SECRET"), "{url:?}: {err}");
    }
});

/// True when `SECRET` is written where a password may be, and nowhere
/// after the URL's last `@` nor in a user name shown as such: between `://`
/// and that `@`, after the first `:` (or anywhere there, if what precedes
/// the `:`, or the whole user information when it has none, contains `/`,
/// `?`, `#` or `@`). Kept in step with `url_params_check` in
/// crates/pool-core/tests/fuzz_regressions.rs.
fn secret_before_last_at(url: &str) -> bool {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return false;
    };
    match url.rfind('@') {
        // A real scheme and what follows the last '@' are shown as they are.
        Some(at)
            if at >= start
                && !url[at..].contains("SECRET")
                && !(is_scheme(&url[..start - 3]) && url[..start].contains("SECRET")) =>
        {
            let region = &url[start..at];
            let plain = |s: &str| !s.contains(['/', '?', '#', '@']);
            match region.split_once(':') {
                // A user name is shown, and may hold the word legitimately.
                Some((user, password)) if plain(user) => {
                    password.contains("SECRET") && !user.contains("SECRET")
                }
                Some(_) => region.contains("SECRET"),
                None if plain(region) => false,
                None => region.contains("SECRET"),
            }
        }
        _ => false,
    }
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}
