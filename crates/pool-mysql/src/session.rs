//! What a loan left in the session, as far as the server reports it and the
//! statements' text shows: decides whether a returned connection needs no
//! reset, a light one (`ROLLBACK`, `LAST_INSERT_ID` back to 0) or the full
//! `COM_RESET_CONNECTION` (see [`Isolation::Full`](crate::Isolation::Full)).
//!
//! # Where the knowledge comes from
//!
//! * **The server.** With the client capability `CLIENT_SESSION_TRACK` and
//!   the session variables of [`TRACKING_SQL`], every OK packet lists what
//!   the statement changed: system variables, the default schema, the
//!   transaction state (`T_______`: a transaction is open; `_______L`:
//!   `LOCK TABLES`), and a catch-all "state changed" for user variables set
//!   with `SET`, temporary tables, SQL `PREPARE`, `SET ROLE`.
//! * **The statement's text**, for what the server does not report (found
//!   on MariaDB 10.11 by running each statement and reading the OK packet):
//!   user-level locks (`GET_LOCK`), `LAST_INSERT_ID(expr)`, `:=` and
//!   `INTO @var` assignments, sequences (`NEXTVAL`, `SETVAL`,
//!   `NEXT VALUE FOR`), `HANDLER`, `XA`, `FLUSH … WITH READ LOCK`,
//!   `SET TRANSACTION` (the next transaction's characteristics), stored
//!   procedures (`CALL`), and
//!   anything a stored function does: a statement that returns rows ends
//!   with an EOF packet, which carries no report, so changes made while
//!   computing rows (a stored function running `SET`) are reported only
//!   with the *next* OK packet, possibly in the next loan. So a statement
//!   counts as [plain](is_plain) only when its text calls no function but
//!   the built-in ones listed in [`BUILT_INS`], and uses none of the above;
//!   any other statement makes the loan need the full reset.
//!
//! What neither can see, and so is documented as a limit on
//! [`Isolation::Full`](crate::Isolation::Full): a view that calls a stored
//! function which changes session state, and a trigger that takes a
//! user-level lock.

use mysql::consts::SessionStateType;
use mysql::Conn;

/// Turns the server's session-state reports on. `session_track_*` are
/// session variables: a `COM_RESET_CONNECTION` resets them, so the full
/// reset runs this again.
pub(crate) const TRACKING_SQL: &str = "SET SESSION session_track_state_change = ON, \
     session_track_schema = ON, session_track_system_variables = '*', \
     session_track_transaction_info = 'STATE'";

/// What the connection knows about the session since its last reset.
///
/// | Field            | Set by                                         | Undone by              |
/// |------------------|------------------------------------------------|------------------------|
/// | `used`           | any `&mut` access                              | —                      |
/// | `changed`        | `DerefMut`, a non-plain statement, an error, a reported change other than the transaction state, `LOCK TABLES` | the full reset |
/// | `in_transaction` | the last reported transaction state not idle   | `ROLLBACK`             |
/// | `insert_id`      | an OK packet with a last insert id             | `DO LAST_INSERT_ID(0)` |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// Borrowed through `&mut` since the last reset.
    pub(crate) used: bool,
    /// Something only the full reset undoes may have been left (or the
    /// pool cannot tell).
    pub(crate) changed: bool,
    /// The server last reported an open transaction.
    pub(crate) in_transaction: bool,
    /// `LAST_INSERT_ID()` may be non-zero.
    pub(crate) insert_id: bool,
}

/// What a returned connection needs, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetPlan {
    /// Nothing to undo: no round trip.
    Nothing,
    /// One light statement: `ROLLBACK` and/or `DO LAST_INSERT_ID(0)`.
    Light { rollback: bool, insert_id: bool },
    /// `COM_RESET_CONNECTION` and what it leaves in place.
    Full,
}

impl Session {
    /// What `Isolation::Full` must run for this session; `tracked` is
    /// whether the server reports session state on this connection.
    pub(crate) fn full_plan(&self, tracked: bool) -> ResetPlan {
        if !self.used {
            ResetPlan::Nothing
        } else if !tracked || self.changed {
            ResetPlan::Full
        } else if self.in_transaction || self.insert_id {
            ResetPlan::Light {
                rollback: self.in_transaction,
                insert_id: self.insert_id,
            }
        } else {
            ResetPlan::Nothing
        }
    }

    /// Whether `Isolation::Rollback` must run its `ROLLBACK`.
    pub(crate) fn needs_rollback(&self, tracked: bool) -> bool {
        self.used && (!tracked || self.changed || self.in_transaction)
    }

    /// Reads what the server reported in `conn`'s last OK packet, after a
    /// statement that succeeded.
    pub(crate) fn observe(&mut self, conn: &Conn) {
        if conn.last_insert_id() != 0 {
            self.insert_id = true;
        }
        let Ok(changes) = conn.session_state_changes() else {
            self.changed = true;
            return;
        };
        for change in changes {
            match change.data_type() {
                SessionStateType::SESSION_TRACK_TRANSACTION_STATE => {
                    match transaction_state(change.data_ref()) {
                        Some(state) if state.len() == 8 => {
                            // Position 8 is `LOCK TABLES`, which `ROLLBACK`
                            // does not end.
                            if state[7] != b'_' {
                                self.changed = true;
                            }
                            self.in_transaction = state.iter().any(|&c| c != b'_');
                        }
                        _ => self.changed = true,
                    }
                }
                _ => self.changed = true,
            }
        }
    }
}

/// The state string of a transaction-state report: a length-encoded
/// string (one length byte, as the state is 8 characters).
fn transaction_state(data: &[u8]) -> Option<&[u8]> {
    let (&len, rest) = data.split_first()?;
    rest.get(..usize::from(len))
}

/// Whether the server's OK packet to the tracking `SET` shows that it
/// reports session state (a server without `CLIENT_SESSION_TRACK` sends
/// nothing, and the pool then resets every used connection in full).
pub(crate) fn reports_state(conn: &Conn) -> bool {
    conn.session_state_changes()
        .is_ok_and(|changes| !changes.is_empty())
}

/// Built-in functions a plain statement may call: none of them changes
/// session state, and a stored function cannot take their names without a
/// database qualifier (which makes the call non-plain: `db.f(`). Keywords
/// that take a parenthesis are here too. Upper case.
const BUILT_INS: &[&str] = &[
    "ABS",
    "AGAINST",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "AVG",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CEIL",
    "CEILING",
    "CHAR_LENGTH",
    "COALESCE",
    "CONCAT",
    "CONCAT_WS",
    "CONNECTION_ID",
    "CONVERT",
    "COUNT",
    "CURRENT_ROLE",
    "CURRENT_USER",
    "DATABASE",
    "FOUND_ROWS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "ROW_COUNT",
    "SCHEMA",
    "SESSION_USER",
    "USER",
    "UUID",
    "VERSION",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURTIME",
    "DATE",
    "DATEDIFF",
    "DATE_ADD",
    "DATE_FORMAT",
    "DATE_SUB",
    "DAY",
    "DESC",
    "DISTINCT",
    "ELSE",
    "EXISTS",
    "EXTRACT",
    "FIELD",
    "FIND_IN_SET",
    "FLOOR",
    "FROM",
    "FROM_UNIXTIME",
    "GREATEST",
    "GROUP_CONCAT",
    "HAVING",
    "HEX",
    "HOUR",
    "IF",
    "IFNULL",
    "IN",
    "INSERT",
    "INSTR",
    "INTERVAL",
    "IS",
    "ISNULL",
    "JSON_ARRAY",
    "JSON_CONTAINS",
    "JSON_EXTRACT",
    "JSON_OBJECT",
    "JSON_UNQUOTE",
    "JSON_VALUE",
    "KEY",
    "LCASE",
    "LEAST",
    "LEFT",
    "LENGTH",
    "LIKE",
    "LIMIT",
    "LOCATE",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MATCH",
    "MAX",
    "MD5",
    "MIN",
    "MINUTE",
    "MOD",
    "MONTH",
    "NOT",
    "NOW",
    "NULLIF",
    "ON",
    "OR",
    "OVER",
    "PARTITION",
    "POW",
    "POWER",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "ROUND",
    "ROW",
    "RPAD",
    "RTRIM",
    "SECOND",
    "SELECT",
    "SET",
    "SHA1",
    "SHA2",
    "SIGN",
    "SQRT",
    "SUBSTR",
    "SUBSTRING",
    "SUM",
    "THEN",
    "TIMESTAMPDIFF",
    "TRIM",
    "TRUNCATE",
    "UCASE",
    "UNHEX",
    "UNIX_TIMESTAMP",
    "UPPER",
    "USING",
    "UTC_TIMESTAMP",
    "VALUE",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
    "YEAR",
];

/// Words that make a statement non-plain wherever they appear (upper case).
const UNTRACKED: &[&str] = &[
    "CALL",
    "FLUSH",
    "GET_LOCK",
    "HANDLER",
    "LASTVAL",
    "LAST_INSERT_ID",
    "NEXT",
    "NEXTVAL",
    "SETVAL",
    "XA",
];

/// Words after which an identifier followed by `(` names a table and its
/// column list, not a function (`INSERT INTO t (a, b)`).
const TABLE_BEFORE: &[&str] = &["INTO", "TABLE", "JOIN", "UPDATE", "FROM"];

/// Whether `sql` can leave nothing in the session that the server does not
/// report in the statement's own OK packet (see the module doc): one
/// statement, no function call but [`BUILT_INS`], no user variable, no word
/// of [`UNTRACKED`]. False positives only cost a reset.
///
/// A lexer, not a parser: it skips comments and quoted strings, and
/// treats `/*! … */` (MySQL's executable comments) as code.
pub(crate) fn is_plain(sql: &str) -> bool {
    // `SET TRANSACTION …` (no `SESSION`) sets the *next* transaction's
    // characteristics, which `session_track_transaction_info = 'STATE'` does
    // not report: the next borrower's transaction would inherit them.
    let mut words = sql
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty());
    if words.next().is_some_and(|w| w.eq_ignore_ascii_case("SET"))
        && words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("TRANSACTION"))
    {
        return false;
    }
    let b = sql.as_bytes();
    let mut i = 0;
    // The last two words, upper-cased, and whether the last token was a
    // word (identifier or keyword) or a quoted identifier.
    let mut last: Option<(usize, usize)> = None;
    let mut before_last: Option<(usize, usize)> = None;
    let mut last_was_quoted_ident = false;
    let mut ended = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => i = skip_line(b, i),
            b'#' => i = skip_line(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                if b.get(i + 2) == Some(&b'!') {
                    return false; // executable comment: code in a comment
                }
                match find(b, i + 2, b"*/") {
                    Some(end) => i = end + 2,
                    None => return false,
                }
            }
            b'\'' => {
                if ended {
                    return false;
                }
                match skip_quoted(b, i, c) {
                    Some(end) => i = end,
                    None => return false,
                }
                last = None;
                last_was_quoted_ident = false;
            }
            // A backquoted name, or a double-quoted one under `ANSI_QUOTES`
            // (a string otherwise): either may name a function.
            b'`' | b'"' => {
                if ended {
                    return false;
                }
                match skip_quoted(b, i, c) {
                    Some(end) => i = end,
                    None => return false,
                }
                before_last = last;
                last = None;
                last_was_quoted_ident = true;
            }
            b'@' => {
                // `@@var` reads a system variable (a `SET` of one is
                // reported); `@var` is a user variable, which can be set
                // without a report (`:=`, `INTO @var`).
                if b.get(i + 1) != Some(&b'@') {
                    return false;
                }
                i += 2;
                last = None;
                last_was_quoted_ident = false;
            }
            b':' if b.get(i + 1) == Some(&b'=') => return false,
            b';' => {
                ended = true;
                i += 1;
            }
            b'(' => {
                if ended {
                    return false;
                }
                if last_was_quoted_ident {
                    // `db`.`f`( or `f`( : a stored function, or a table's
                    // column list after INTO/TABLE (decided by the word
                    // before it).
                    if !before_last.is_some_and(|w| word_in(b, w, TABLE_BEFORE)) {
                        return false;
                    }
                } else if let Some(word) = last {
                    let table = before_last.is_some_and(|w| word_in(b, w, TABLE_BEFORE));
                    if !table && !word_in(b, word, BUILT_INS) {
                        return false;
                    }
                }
                i += 1;
                before_last = last;
                last = None;
                last_was_quoted_ident = false;
            }
            b'.' => {
                // `db.f(`: a qualified name is never a built-in.
                if let Some(next) = b.get(i + 1) {
                    if next.is_ascii_alphabetic() || *next == b'_' || *next == b'`' {
                        let start = i + 1;
                        let end = word_end(b, start);
                        if b[end..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'(')
                            && !before_last.is_some_and(|w| word_in(b, w, TABLE_BEFORE))
                            && !last.is_some_and(|w| word_in(b, w, TABLE_BEFORE))
                        {
                            return false;
                        }
                    }
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                if ended {
                    return false;
                }
                let end = word_end(b, i);
                let word = (i, end);
                if word_in(b, word, UNTRACKED) {
                    return false;
                }
                before_last = last;
                last = Some(word);
                last_was_quoted_ident = false;
                i = end;
            }
            _ => {
                if ended {
                    return false;
                }
                before_last = last;
                last = None;
                last_was_quoted_ident = false;
                i += 1;
            }
        }
    }
    true
}

fn word_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len()
        && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
    {
        i += 1;
    }
    i
}

fn word_in(b: &[u8], (start, end): (usize, usize), list: &[&str]) -> bool {
    let word = &b[start..end];
    list.iter().any(|w| w.as_bytes().eq_ignore_ascii_case(word))
}

fn skip_line(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p + 1)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The index after the closing `quote` of the quoted text starting at `i`
/// (a doubled quote or a backslash escape stays inside).
fn skip_quoted(b: &[u8], i: usize, quote: u8) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'\\' && quote != b'`' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            if b.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_statements() {
        for sql in [
            "SELECT 1",
            "SELECT 1;",
            "select n from bench_tx where id = ?",
            "SELECT ? + 1",
            "UPDATE bench_tx SET n = n + 1 WHERE id = ?",
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')",
            "INSERT INTO `t` (`a`) VALUES (?)",
            "SELECT COUNT(*), MAX(n) FROM t WHERE name LIKE 'GET_LOCK(%'",
            "SELECT @@session.sql_mode",
            "BEGIN",
            "COMMIT",
            "SELECT a FROM t -- GET_LOCK( in a comment\n WHERE b IN (1, 2)",
            "SELECT 'it''s; fine', 'CALL' FROM db.t",
            "SELECT \"CALL\" FROM t",
            "DELETE FROM t WHERE id IN (SELECT id FROM u)",
            "SET SESSION sql_mode = ''",
        ] {
            assert!(is_plain(sql), "{sql}");
        }
    }

    #[test]
    fn statements_that_can_hide_state() {
        for sql in [
            "SELECT GET_LOCK('a', 0)",
            "SELECT get_lock('a', 0)",
            "SELECT LAST_INSERT_ID(5)",
            "SELECT @y := 2",
            "SELECT 5 INTO @w",
            "SET @x = 1",
            "SELECT f_var()",
            "SELECT `f_var`()",
            "SELECT \"f_var\"()",
            "SELECT db.f_var()",
            "SELECT `db`.`f`(1)",
            "CALL p()",
            "SET @z = 1; SELECT 1",
            "SELECT 1; SELECT 2",
            "SELECT NEXT VALUE FOR s",
            "SELECT NEXTVAL(s)",
            "HANDLER t OPEN",
            "XA START 'x'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "set transaction read only",
            "FLUSH TABLES WITH READ LOCK",
            "SELECT /*! GET_LOCK('a', 0) */ 1",
            "SELECT 'unterminated",
            "SELECT 1 /* unterminated",
        ] {
            assert!(!is_plain(sql), "{sql}");
        }
    }

    #[test]
    fn plans() {
        let s = Session::default();
        assert_eq!(s.full_plan(true), ResetPlan::Nothing);
        let used = Session {
            used: true,
            ..Session::default()
        };
        assert_eq!(used.full_plan(true), ResetPlan::Nothing);
        assert_eq!(used.full_plan(false), ResetPlan::Full);
        let tx = Session {
            in_transaction: true,
            ..used
        };
        assert_eq!(
            tx.full_plan(true),
            ResetPlan::Light {
                rollback: true,
                insert_id: false
            }
        );
        assert!(tx.needs_rollback(true));
        assert!(!used.needs_rollback(true));
        let changed = Session {
            changed: true,
            ..tx
        };
        assert_eq!(changed.full_plan(true), ResetPlan::Full);
    }
}
