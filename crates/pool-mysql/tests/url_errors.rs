//! The URL entry points (`from_url`, `builder_from_url`) turn every bad URL
//! into an error naming what is wrong, and no error ever shows the password,
//! whatever characters it has and whether or not they are percent-encoded
//! (issue 16, item 5). No database is needed: these only parse. The checks
//! are shared with the other driver: [`pool_testkit::scenarios::url_errors`].

mod common;

use proptest::prelude::*;

use common::Mysql;
use pool_testkit::scenarios::url_errors::{self, HOSTS, TAILS};

#[test]
fn unencoded_slash_question_mark_and_hash_in_the_password_are_not_shown() {
    url_errors::unencoded_slash_question_mark_and_hash_in_the_password_are_not_shown::<Mysql>();
}

#[test]
fn a_password_with_a_slash_is_the_password() {
    url_errors::a_password_with_a_slash_is_the_password::<Mysql>();
}

#[test]
fn an_unparseable_url_is_shown_redacted_up_to_the_last_at() {
    url_errors::an_unparseable_url_is_shown_redacted_up_to_the_last_at::<Mysql>();
}

#[test]
fn a_hash_before_the_scheme_separator_is_an_error_not_a_panic() {
    url_errors::a_hash_before_the_scheme_separator_is_an_error_not_a_panic::<Mysql>();
}

#[test]
fn an_unknown_parameter_is_named_briefly() {
    url_errors::an_unknown_parameter_is_named_briefly::<Mysql>();
}

#[test]
fn settings_the_pool_cannot_honour_are_errors_naming_them() {
    url_errors::settings_the_pool_cannot_honour_are_errors_naming_them::<Mysql>();
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
        host in prop::sample::select(HOSTS),
        tail in prop::sample::select(TAILS),
    ) {
        url_errors::no_error_shows_the_password::<Mysql>(&prefix, &core, &suffix, encode, &user, host, tail);
    }
}
