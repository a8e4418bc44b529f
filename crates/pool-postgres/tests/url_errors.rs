//! The URL entry points (`from_url`, `builder_from_url`) turn every bad URL
//! into an error naming what is wrong, and no error ever shows the password,
//! whatever characters it has and whether or not they are percent-encoded
//! (issue 16, item 5). No database is needed: these only parse.

use proptest::prelude::*;

use pool_postgres::{builder_from_url, PostgresManager};

/// Every error the URL entry points give for `url`, as text (Display and Debug).
fn errors(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(e) = PostgresManager::from_url(url) {
        out.push(e.to_string());
        out.push(format!("{e:?}"));
    }
    if let Err(e) = builder_from_url(url) {
        out.push(e.to_string());
        out.push(format!("{e:?}"));
    }
    out
}

fn assert_hidden(url: &str, secrets: &[&str]) {
    for msg in errors(url) {
        for s in secrets {
            assert!(!msg.contains(s), "`{s}` shown for {url}: {msg}");
        }
    }
}

#[test]
fn unencoded_slash_question_mark_and_hash_in_the_password_are_not_shown() {
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
            let url = format!("postgres://app:{pw}@db/orders{tail}");
            assert_hidden(&url, &[pw, "SECRET"]);
        }
    }
}

#[test]
fn a_password_with_a_slash_is_the_password() {
    // The userinfo ends at the last '@' before the host, not at the first '/'.
    let (manager, params) =
        PostgresManager::from_url("postgres://app:ab/cd?e#f@db:4000/orders?connection_limit=3")
            .unwrap();
    assert_eq!(params.max_size, Some(3));
    assert_eq!(pg_password(&manager), Some("ab/cd?e#f".to_owned()));
}

#[test]
fn an_unparseable_url_is_shown_redacted_up_to_the_last_at() {
    let url = "postgres://app:pa:ss@w/ord@db:notaport/orders";
    let msgs = errors(url);
    assert!(!msgs.is_empty(), "{url} was accepted");
    for msg in msgs {
        assert!(!msg.contains("pa:ss"), "{msg}");
        assert!(!msg.contains("w/ord"), "{msg}");
    }
}

#[test]
fn a_hash_before_the_scheme_separator_is_an_error_not_a_panic() {
    for url in ["#://", "a#b://h/db", "#://u:p@h/db?connection_limit=1"] {
        assert!(!errors(url).is_empty(), "{url}");
    }
}

#[test]
fn an_unknown_parameter_is_named_briefly() {
    let err = builder_from_url("postgres://app:pw@db/orders?conection_limit=4")
        .map(|_| ())
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`conection_limit`"), "{msg}");
    assert!(msg.contains("`connection_limit`"), "{msg}");
    assert!(msg.len() < 300, "{} chars: {msg}", msg.len());
}

#[test]
fn settings_the_pool_cannot_honour_are_errors_naming_them() {
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
        let url = format!("postgres://app:pw@db/orders?{query}");
        let err = match builder_from_url(&url) {
            Ok((builder, _)) => builder.config().validate().unwrap_err(),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{setting}`")), "{query}: {msg}");
        assert!(msg.contains(range), "{query}: {msg}");
    }
}

/// Percent-encodes every byte of `s` that is not alphanumeric.
fn encode_all(s: &str) -> String {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Passwords made of any printable characters, around a distinctive core,
    /// sent raw or percent-encoded, in URLs with good and bad parameters: no
    /// error shows the password, its core or its encoded form.
    #[test]
    fn no_error_shows_the_password(
        prefix in "\\PC{0,8}",
        core in "Zq[a-zA-Z0-9]{8}",
        suffix in "\\PC{0,8}",
        encode in any::<bool>(),
        user in "[a-z]{1,6}",
        host in prop::sample::select(vec!["db", "db.internal:4000", "127.0.0.1:1", "[::1]:5", "db:port"]),
        tail in prop::sample::select(vec![
            "", "?connection_limit=2", "?conection_limit=2", "?pool_timeout=soon",
            "?max_lifetime=0.0001", "?sslmode=bogus", "?x", "#frag", "?initialization_fail_timeout=1e99",
        ]),
    ) {
        let password = format!("{prefix}{core}{suffix}");
        let shown = if encode { encode_all(&password) } else { password.clone() };
        let url = format!("postgres://{user}:{shown}@{host}/orders{tail}");
        let encoded = encode_all(&password);
        for msg in errors(&url) {
            prop_assert!(!msg.contains(&core), "core shown for {url}: {msg}");
            prop_assert!(!msg.contains(&password), "password shown for {url}: {msg}");
            prop_assert!(!msg.contains(&encoded), "encoded password shown for {url}: {msg}");
        }
    }
}

fn pg_password(m: &PostgresManager<postgres::NoTls>) -> Option<String> {
    m.config()
        .get_password()
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
}
