//! The drivers' URL entry points (`from_url`, `builder_from_url`) on URLs
//! with a fuzzed password around a `SECRET` core: no panic, and no error
//! (Display or Debug) ever shows the core, encoded or not.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    mysql: bool,
    user: String,
    before: String,
    after: String,
    /// Host, port, path, query and fragment: whatever follows the `@`.
    rest: String,
    /// Percent-encode the password's non-alphanumeric characters.
    encode: bool,
}

const CORE: &str = "SECRET";

fuzz_target!(|input: Input| {
    if input.user.contains(CORE) || input.rest.contains(CORE) {
        return; // shown legitimately: it is not (only) in the password
    }
    let password = format!("{}{CORE}{}", input.before, input.after);
    let password = if input.encode {
        password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    } else {
        password
    };
    let scheme = if input.mysql { "mysql" } else { "postgres" };
    let url = format!("{scheme}://{}:{password}@{}", input.user, input.rest);
    let mut errors = Vec::new();
    if input.mysql {
        if let Err(e) = pool_mysql::MysqlManager::from_url(&url) {
            errors.push(e);
        }
        if let Err(e) = pool_mysql::builder_from_url(&url) {
            errors.push(e);
        }
    } else {
        if let Err(e) = pool_postgres::PostgresManager::from_url(&url) {
            errors.push(e);
        }
        if let Err(e) = pool_postgres::builder_from_url(&url) {
            errors.push(e);
        }
    }
    for e in errors {
        let msg = format!("{e} {e:?}");
        assert!(!msg.contains(CORE), "{url:?}: {msg}");
    }
    // Anything from_url accepted must also be accepted or rejected cleanly
    // by validate (never a panic).
    if let Ok((builder, _)) = pool_postgres::builder_from_url(&url) {
        let _ = builder.config().validate();
    }
});
