//! The URL entry points (`from_url`, `builder_from_url`) turn every bad URL
//! into an error naming what is wrong, and no error ever shows the password,
//! whatever characters it has and whether or not they are percent-encoded
//! (issue 16, item 5). No database is needed: these only parse.
//!
//! The property test stays in each driver's test file (its `proptest!`
//! block keeps that file's saved regressions); it draws from [`HOSTS`] and
//! [`TAILS`] and checks each case with [`no_error_shows_the_password`].

use super::Driver;

/// Every error the URL entry points give for `url`, as text (Display and Debug).
pub fn errors<D: Driver>(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = D::from_url(url) {
        out.push(pool_core::ErrorChain(&e).to_string());
        out.push(format!("{e:?}"));
    }
    if let Err(e) = D::builder_from_url(url) {
        out.push(pool_core::ErrorChain(&e).to_string());
        out.push(format!("{e:?}"));
    }
    out
}

fn assert_hidden<D: Driver>(url: &str, secrets: &[&str]) {
    for msg in errors::<D>(url) {
        for s in secrets {
            assert!(!msg.contains(s), "`{s}` shown for {url}: {msg}");
        }
    }
}

/// Passwords with a raw `/`, `?`, `#` (and `&`, `=`), with good and bad
/// parameters after them: no error shows the password or its `SECRET` part.
pub fn unencoded_slash_question_mark_and_hash_in_the_password_are_not_shown<D: Driver>() {
    for pw in [
        "ab/cdSECRET",
        "ab?SECRET&x",
        "ab#SECRET",
        "ab?SECRET=1&x",
        "a/b?c#dSECRET",
    ] {
        for tail in [
            "",
            "?connection_limit=2",
            "?conection_limit=2",
            "?pool_timeout=soon",
        ] {
            let url = format!("{}://app:{pw}@db/orders{tail}", D::SCHEME);
            assert_hidden::<D>(&url, &[pw, "SECRET"]);
        }
    }
}

/// The userinfo ends at the last '@' before the host, not at the first '/'.
pub fn a_password_with_a_slash_is_the_password<D: Driver>() {
    let (manager, params) = D::from_url(&format!(
        "{}://app:ab/cd?e#f@db:4000/orders?connection_limit=3",
        D::SCHEME
    ))
    .unwrap();
    assert_eq!(params.max_size, Some(3));
    assert_eq!(D::password(&manager), Some("ab/cd?e#f".to_owned()));
}

/// An unparseable URL is an error, and shows nothing of the password.
pub fn an_unparseable_url_is_shown_redacted_up_to_the_last_at<D: Driver>() {
    let url = format!("{}://app:pa:ss@w/ord@db:notaport/orders", D::SCHEME);
    let msgs = errors::<D>(&url);
    assert!(!msgs.is_empty(), "{url} was accepted");
    for msg in msgs {
        assert!(!msg.contains("pa:ss"), "{msg}");
        assert!(!msg.contains("w/ord"), "{msg}");
    }
}

/// A `#` before `://` is an error, not a panic.
pub fn a_hash_before_the_scheme_separator_is_an_error_not_a_panic<D: Driver>() {
    for url in ["#://", "a#b://h/db", "#://u:p@h/db?connection_limit=1"] {
        assert!(!errors::<D>(url).is_empty(), "{url}");
    }
}

/// A misspelt parameter is named with its likely meaning, in under 300 bytes.
pub fn an_unknown_parameter_is_named_briefly<D: Driver>() {
    let err = D::builder_from_url(&format!(
        "{}://app:pw@db/orders?conection_limit=4",
        D::SCHEME
    ))
    .map(|_| ())
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`conection_limit`"), "{msg}");
    assert!(msg.contains("`connection_limit`"), "{msg}");
    assert!(msg.len() < 300, "{} chars: {msg}", msg.len());
}

/// Settings out of the pool's range are errors (from the URL entry point or
/// from `Config::validate`) naming the setting and its range.
pub fn settings_the_pool_cannot_honour_are_errors_naming_them<D: Driver>() {
    for (query, setting, range) in [
        ("max_lifetime=0.0001&idle_timeout=0", "max_lifetime", "10ms"),
        ("keepalive_time=0.001", "keepalive_time", "10ms"),
        (
            "initialization_fail_timeout=10000000000000000000",
            "initialization_fail_timeout",
            "3650 days",
        ),
        ("connect_timeout=0.0001", "connect_timeout", "0.001"),
    ] {
        let url = format!("{}://app:pw@db/orders?{query}", D::SCHEME);
        let err = match D::builder_from_url(&url) {
            Ok((builder, _)) => builder.config().validate().unwrap_err(),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{setting}`")), "{query}: {msg}");
        assert!(msg.contains(range), "{query}: {msg}");
    }
}

/// Percent-encodes every byte of `s` that is not alphanumeric.
pub fn encode_all(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Hosts the property test draws from.
pub const HOSTS: &[&str] = &[
    "db",
    "db.internal:4000",
    "127.0.0.1:1",
    "[::1]:5",
    "db:port",
];

/// What the property test puts after the database name: good and bad
/// parameters, a fragment.
pub const TAILS: &[&str] = &[
    "",
    "?connection_limit=2",
    "?conection_limit=2",
    "?pool_timeout=soon",
    "?max_lifetime=0.0001",
    "?sslmode=bogus",
    "?x",
    "#frag",
    "?initialization_fail_timeout=1e99",
];

/// One case of the property test: the password `{prefix}{core}{suffix}`
/// (`core` is distinctive), sent raw or percent-encoded as `user`'s on
/// `host`, with `tail` after the database name. No error may show the
/// password, its core or its encoded form. Panics otherwise (proptest
/// reports and shrinks a panic as a failed case).
pub fn no_error_shows_the_password<D: Driver>(
    prefix: &str,
    core: &str,
    suffix: &str,
    encode: bool,
    user: &str,
    host: &str,
    tail: &str,
) {
    let password = format!("{prefix}{core}{suffix}");
    let shown = if encode {
        encode_all(&password)
    } else {
        password.clone()
    };
    let url = format!("{}://{user}:{shown}@{host}/orders{tail}", D::SCHEME);
    let encoded = encode_all(&password);
    for msg in errors::<D>(&url) {
        assert!(!msg.contains(core), "core shown for {url}: {msg}");
        assert!(!msg.contains(&password), "password shown for {url}: {msg}");
        assert!(
            !msg.contains(&encoded),
            "encoded password shown for {url}: {msg}"
        );
    }
}
