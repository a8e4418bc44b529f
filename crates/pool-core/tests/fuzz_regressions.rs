//! Every input the fuzz targets in `fuzz/` found a defect with, replayed
//! with the target's own check, so that CI holds them without fuzzing
//! (`cargo xtask fuzz` runs the targets; issue 16). The raw inputs are also
//! in `fuzz/seeds/<target>/crash-*`, where the fuzzer starts from them.

use pool_core::url_params::{redact_url, url_error, PoolParams};

/// The check of the `url_params` fuzz target: nothing written where a
/// password may be (`SECRET` here) shows in an error or a redacted URL.
fn url_params_check(data: &[u8]) {
    let url = String::from_utf8_lossy(data);
    let texts = [
        match PoolParams::extract(&url, &["sslmode", "password"]) {
            Ok(_) => String::new(),
            Err(e) => format!("{e} {e:?}"),
        },
        redact_url(&url),
        url_error(&url, &"driver says no").to_string(),
    ];
    for text in texts {
        assert!(!text.contains("SECRET"), "{url:?}: {text}");
    }
}

/// `url_params`, 20 s in: a user information without `:` (a typo for it)
/// but with a `/` was shown whole as a user name by `redact_url`.
#[test]
fn url_params_user_information_without_a_colon() {
    let mut data = b"mysql://app'ab/cdSECRET@".to_vec();
    data.extend([0x82; 26]);
    data.extend(b"\0\0\0\0abab\0\0\0\0\0Db/orders");
    url_params_check(&data);
    url_params_check(b"mysql://app'ab/cdSECRET@db/orders");
    url_params_check(b"postgres://a?SECRET@db/orders");
}

/// `url_params`: the first `://` came after the password (`app:pw@db/...`
/// pasted without a scheme, a `://` later on), so the "scheme" holding the
/// password was shown as is. A scheme is now checked (RFC 3986), and a
/// string that is not a URL is shown only from its last `@` on.
#[test]
fn url_params_scheme_after_the_password() {
    let mut data = b"pos".to_vec();
    data.extend([0; 8]);
    data.extend(b"/app:ab?SECRET&x@db/\xefrde");
    data.extend([0; 19]);
    data.extend(b"tgres://app:ab?SECRET&x@db/\xefrders");
    url_params_check(&data);
    url_params_check(b"app:SECRET@db/orders?x=http://h");
    url_params_check(b"app:SECRET@db/orders?x=http://u:SECRET@h");
}
