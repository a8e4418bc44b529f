//! What a loan left in the session, as far as the statements' text shows:
//! decides whether a returned connection needs no reset, a light one
//! (`ROLLBACK`, `DISCARD SEQUENCES`) or the whole
//! [`Isolation::Full`](crate::Isolation::Full) batch.
//!
//! PostgreSQL reports the transaction status in every ReadyForQuery, but the
//! `postgres` crate's synchronous client keeps it to itself (as it keeps
//! the command tags and the socket), and there is no report of session
//! state at all. So the pool reads the text of each statement sent through
//! [`PgConnection`](crate::PgConnection)'s own methods:
//!
//! * a **plain** statement ([`classify`]) cannot change session state: one
//!   `SELECT`, `WITH`, `VALUES`, `TABLE`, `UPDATE` or `DELETE` statement
//!   that calls no function but the built-in ones of [`BUILT_INS`] (so no
//!   `set_config`, `pg_advisory_lock`, `nextval`, `dblink_connect`, nor a
//!   function of yours), and has no `INTO` (`SELECT … INTO` creates a
//!   table);
//! * `INSERT` is plain too, except that a column's default may call
//!   `nextval`, which sets the session's `currval`/`lastval`: it asks for
//!   `DISCARD SEQUENCES` (as does an `UPDATE` that sets a column to
//!   `DEFAULT`);
//! * `BEGIN`/`START TRANSACTION` open a transaction, which only a
//!   `ROLLBACK` must end; `COMMIT`/`END`/`ROLLBACK`/`ABORT` close it;
//!   `SAVEPOINT`, `RELEASE` and `ROLLBACK TO` keep it;
//! * anything else (`SET`, `LISTEN`, `PREPARE`, `DECLARE`, `CREATE TEMP`,
//!   `DO`, `CALL`, `COPY`, several statements in one text, dollar quotes,
//!   a failed statement) asks for the whole batch.
//!
//! What the text cannot show, documented as a limit on `Isolation::Full`: a
//! view that calls a function which changes session state, and a trigger
//! that does (`set_config(.., false)`, a session advisory lock).

use std::collections::HashMap;

use postgres::Statement;

/// What the connection knows about the session since its last reset.
///
/// | Field            | Set by                                      | Undone by           |
/// |------------------|---------------------------------------------|---------------------|
/// | `used`           | any `&mut` access                           | —                   |
/// | `changed`        | `DerefMut`, a non-plain statement, an error | the whole batch     |
/// | `in_transaction` | `BEGIN`/`START TRANSACTION`                 | `ROLLBACK`          |
/// | `sequences`      | `INSERT`                                    | `DISCARD SEQUENCES` |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) used: bool,
    pub(crate) changed: bool,
    pub(crate) in_transaction: bool,
    pub(crate) sequences: bool,
}

/// What a returned connection needs, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetPlan {
    /// Nothing to undo: no round trip.
    Nothing,
    /// One light batch: `ROLLBACK` and/or `DISCARD SEQUENCES`.
    Light { rollback: bool, sequences: bool },
    /// The policy's whole batch.
    Full,
}

/// What one statement's text shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Changes no session state.
    Plain,
    /// Plain, but may move a sequence (`currval`/`lastval`).
    Insert,
    /// Opens a transaction.
    Begin,
    /// Ends the transaction.
    End,
    /// Anything else: may change anything.
    Other,
}

impl Session {
    /// What `Isolation::Full` must run; `tracked` is whether the pool
    /// tracks session state on this connection.
    pub(crate) fn full_plan(&self, tracked: bool) -> ResetPlan {
        if !self.used {
            ResetPlan::Nothing
        } else if !tracked || self.changed {
            ResetPlan::Full
        } else if self.in_transaction || self.sequences {
            ResetPlan::Light {
                rollback: self.in_transaction,
                sequences: self.sequences,
            }
        } else {
            ResetPlan::Nothing
        }
    }

    /// Whether `Isolation::Rollback` must run its batch.
    pub(crate) fn needs_rollback(&self, tracked: bool) -> bool {
        self.used && (!tracked || self.changed || self.in_transaction)
    }

    /// Notes a statement about to be sent.
    #[inline]
    pub(crate) fn before(&mut self, kind: Kind) {
        self.used = true;
        match kind {
            Kind::Plain => {}
            Kind::Insert => self.sequences = true,
            Kind::Begin => self.in_transaction = true,
            Kind::End => self.in_transaction = false,
            Kind::Other => self.changed = true,
        }
    }
}

/// Statements prepared through `PgConnection`, with what their text
/// showed, so that running one later is judged by its text.
///
/// A statement is known by the addresses of its parameter-type and column
/// lists (`postgres::Statement` has no public name or identity); a clone is
/// kept with each entry, so those addresses cannot be reused by another
/// statement while the entry lives. A statement with neither list (no
/// parameters, no columns) has no address to go by, and counts as unknown.
#[derive(Default)]
pub(crate) struct KnownStatements {
    map: HashMap<(usize, usize), (Kind, Statement)>,
}

impl KnownStatements {
    fn key(statement: &Statement) -> Option<(usize, usize)> {
        let (params, columns) = (statement.params(), statement.columns());
        if params.is_empty() && columns.is_empty() {
            return None;
        }
        Some((params.as_ptr() as usize, columns.as_ptr() as usize))
    }

    /// Remembers what `statement`'s text showed.
    pub(crate) fn remember(&mut self, statement: &Statement, kind: Kind) {
        if let Some(key) = Self::key(statement) {
            self.map.insert(key, (kind, statement.clone()));
        }
    }

    /// What `statement`'s text showed, if it was remembered.
    #[inline]
    pub(crate) fn kind(&self, statement: &Statement) -> Option<Kind> {
        let key = Self::key(statement)?;
        self.map.get(&key).map(|(kind, _)| *kind)
    }

    pub(crate) fn forget(&mut self, statement: &Statement) {
        if let Some(key) = Self::key(statement) {
            self.map.remove(&key);
        }
    }

    pub(crate) fn clear(&mut self) {
        if !self.map.is_empty() {
            self.map.clear();
        }
    }
}

/// Built-in functions a plain statement may call: none changes session
/// state. A function of the same name in another schema needs a qualified
/// call (`s.f(`), which is never plain; one in `public` earlier on the
/// `search_path` than `pg_catalog` is not possible (`pg_catalog` is
/// searched first unless named later, which a `SET` would show). Keywords
/// that take a parenthesis are here too. Upper case.
const BUILT_INS: &[&str] = &[
    "ABS",
    "AND",
    "ANY",
    "ARRAY",
    "ARRAY_AGG",
    "ARRAY_LENGTH",
    "AS",
    "AVG",
    "BETWEEN",
    "BOOL_AND",
    "BOOL_OR",
    "BY",
    "CASE",
    "CAST",
    "CEIL",
    "CHAR_LENGTH",
    "COALESCE",
    "CONCAT",
    "CONCAT_WS",
    "COUNT",
    "CURRENT_DATE",
    "DATE_PART",
    "DATE_TRUNC",
    "DISTINCT",
    "ELSE",
    "EXISTS",
    "EXTRACT",
    "FILTER",
    "FLOOR",
    "FROM",
    "GREATEST",
    "GROUP",
    "HAVING",
    "IN",
    "INITCAP",
    "INTERVAL",
    "JOIN",
    "JSONB_AGG",
    "JSONB_BUILD_OBJECT",
    "JSON_AGG",
    "JSON_BUILD_OBJECT",
    "LATERAL",
    "LEAST",
    "LEFT",
    "LENGTH",
    "LIKE",
    "LIMIT",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MAX",
    "MIN",
    "MOD",
    "NOT",
    "NOW",
    "NULLIF",
    "ON",
    "OR",
    "OVER",
    "PARTITION",
    "POSITION",
    "POWER",
    "REPLACE",
    "RIGHT",
    "ROUND",
    "ROW",
    "ROW_NUMBER",
    "RPAD",
    "RTRIM",
    "SELECT",
    "SET",
    "SIGN",
    "SOME",
    "SPLIT_PART",
    "SQRT",
    "STRING_AGG",
    "SUBSTR",
    "SUBSTRING",
    "SUM",
    "THEN",
    "TO_CHAR",
    "TRIM",
    "TRUNC",
    "UNNEST",
    "UPPER",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Words after which an identifier followed by `(` names a table (and its
/// column list), not a function.
const TABLE_BEFORE: &[&str] = &["INTO", "TABLE", "UPDATE", "ONLY"];

/// What `sql` (one text sent to the server) may leave in the session; see
/// the module doc. A lexer, not a parser: false alarms only cost a reset.
pub(crate) fn classify(sql: &str) -> Kind {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut first: Option<(usize, usize)> = None;
    let mut second: Option<(usize, usize)> = None;
    let mut last: Option<(usize, usize)> = None;
    let mut before_last: Option<(usize, usize)> = None;
    let mut quoted_name = false;
    let mut ended = false;
    let mut into = false;
    // `SET col = DEFAULT` may call a sequence's `nextval`.
    let mut default = false;
    let mut savepoint_words = false;
    while i < b.len() {
        let c = b[i];
        if ended && !matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b';') && !starts_comment(b, i) {
            return Kind::Other; // a second statement
        }
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                match find(b, i + 2, b"*/") {
                    // PostgreSQL's comments nest: give up on a nested one.
                    Some(end) if find(&b[..end], i + 2, b"/*").is_none() => i = end + 2,
                    _ => return Kind::Other,
                }
            }
            b'\'' => {
                // 'text', E'text' (the E was read as a word), '' inside.
                match skip_quoted(b, i, b'\'', true) {
                    Some(end) => i = end,
                    None => return Kind::Other,
                }
                before_last = last;
                last = None;
                quoted_name = false;
            }
            b'"' => {
                match skip_quoted(b, i, b'"', false) {
                    Some(end) => i = end,
                    None => return Kind::Other,
                }
                before_last = last;
                last = None;
                quoted_name = true;
            }
            b'$' => {
                // `$1` is a parameter; anything else is a dollar quote.
                if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Kind::Other;
                }
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                before_last = last;
                last = None;
                quoted_name = false;
            }
            b';' => {
                ended = true;
                i += 1;
            }
            b'(' => {
                let table = before_last.is_some_and(|w| word_in(b, w, TABLE_BEFORE));
                if quoted_name && !table {
                    return Kind::Other;
                }
                if let Some(word) = last {
                    if !table && !word_in(b, word, BUILT_INS) {
                        return Kind::Other;
                    }
                }
                before_last = last;
                last = None;
                quoted_name = false;
                i += 1;
            }
            b'.' if b
                .get(i + 1)
                .is_some_and(|&n| n.is_ascii_alphabetic() || n == b'_' || n == b'"') =>
            {
                // `s.f(`: a qualified call is never a built-in; `s.t` (a
                // table) and `t.col` are fine.
                let start = i + 1;
                let end = if b[start] == b'"' {
                    match skip_quoted(b, start, b'"', false) {
                        Some(end) => end,
                        None => return Kind::Other,
                    }
                } else {
                    word_end(b, start)
                };
                let next = b[end..].iter().find(|c| !c.is_ascii_whitespace());
                let table = last.is_some_and(|w| word_in(b, w, TABLE_BEFORE))
                    || before_last.is_some_and(|w| word_in(b, w, TABLE_BEFORE));
                if next == Some(&b'(') && !table {
                    return Kind::Other;
                }
                i = end;
                before_last = last;
                last = None;
                quoted_name = false;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let end = word_end(b, i);
                let word = (i, end);
                if first.is_none() {
                    first = Some(word);
                } else if second.is_none() {
                    second = Some(word);
                }
                if word_in(b, word, &["INTO"]) {
                    into = true;
                }
                if word_in(b, word, &["DEFAULT"]) {
                    default = true;
                }
                if word_in(b, word, &["TO", "CHAIN", "SAVEPOINT"]) {
                    savepoint_words = true;
                }
                before_last = last;
                last = Some(word);
                quoted_name = false;
                i = end;
            }
            _ => {
                before_last = last;
                last = None;
                quoted_name = false;
                i += 1;
            }
        }
    }
    let Some(first) = first else {
        return Kind::Plain; // empty: nothing is run
    };
    let is = |list: &[&str]| word_in(b, first, list);
    if is(&["SELECT", "WITH", "VALUES", "TABLE"]) {
        if into {
            Kind::Other
        } else {
            Kind::Plain
        }
    } else if is(&["UPDATE"]) && default {
        Kind::Insert
    } else if is(&["UPDATE", "DELETE"]) {
        Kind::Plain
    } else if is(&["INSERT"]) {
        Kind::Insert
    } else if is(&["BEGIN"])
        || (is(&["START"]) && second.is_some_and(|w| word_in(b, w, &["TRANSACTION"])))
    {
        Kind::Begin
    } else if is(&["COMMIT", "END", "ROLLBACK", "ABORT"]) {
        // `ROLLBACK TO SAVEPOINT`, `COMMIT AND CHAIN` keep the transaction;
        // `COMMIT PREPARED`, `ROLLBACK PREPARED` are two-phase commands.
        if savepoint_words {
            Kind::Plain
        } else if second.is_some_and(|w| word_in(b, w, &["PREPARED"])) {
            Kind::Other
        } else {
            Kind::End
        }
    } else if is(&["SAVEPOINT", "RELEASE"]) {
        Kind::Plain
    } else {
        Kind::Other
    }
}

fn starts_comment(b: &[u8], i: usize) -> bool {
    (b[i] == b'-' && b.get(i + 1) == Some(&b'-')) || (b[i] == b'/' && b.get(i + 1) == Some(&b'*'))
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

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The index after the closing `quote` of the text starting at `i`; a
/// doubled quote stays inside, and with `backslash` so does `\'` (an
/// `E'…'` string; in a standard string a backslash is plain, so this only
/// ever ends a string later than the server would, which makes the rest
/// look like more text, never less).
fn skip_quoted(b: &[u8], i: usize, quote: u8, backslash: bool) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        if backslash && b[j] == b'\\' {
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
    fn kinds() {
        for (sql, kind) in [
            ("SELECT 1", Kind::Plain),
            ("select 1;", Kind::Plain),
            ("SELECT $1::int + 1", Kind::Plain),
            ("SELECT n FROM bench_tx WHERE id = $1", Kind::Plain),
            (
                "SELECT count(*), max(n) FROM s.t WHERE a IN (1, 2)",
                Kind::Plain,
            ),
            ("SELECT 'set_config(' AS x, \"Quoted\" FROM t", Kind::Plain),
            ("SELECT a -- set_config(\n FROM t", Kind::Plain),
            ("WITH x AS (SELECT 1) SELECT * FROM x", Kind::Plain),
            ("UPDATE bench_tx SET n = n + 1 WHERE id = $1", Kind::Plain),
            ("DELETE FROM t WHERE id = $1", Kind::Plain),
            ("INSERT INTO t (a, b) VALUES ($1, $2)", Kind::Insert),
            ("INSERT INTO s.t (a) VALUES (1)", Kind::Insert),
            ("UPDATE t SET id = DEFAULT WHERE id = $1", Kind::Insert),
            ("BEGIN", Kind::Begin),
            ("BEGIN ISOLATION LEVEL SERIALIZABLE", Kind::Begin),
            ("START TRANSACTION READ ONLY", Kind::Begin),
            ("COMMIT", Kind::End),
            ("END", Kind::End),
            ("ROLLBACK", Kind::End),
            ("ROLLBACK TO SAVEPOINT a", Kind::Plain),
            ("COMMIT AND CHAIN", Kind::Plain),
            ("SAVEPOINT a", Kind::Plain),
            ("RELEASE SAVEPOINT a", Kind::Plain),
            ("", Kind::Plain),
        ] {
            assert_eq!(classify(sql), kind, "{sql}");
        }
    }

    #[test]
    fn statements_that_can_change_the_session() {
        for sql in [
            "SET search_path TO x",
            "SELECT set_config('a.b', 'c', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT pg_catalog.pg_advisory_lock(1)",
            "SELECT nextval('s')",
            "SELECT my_function()",
            "SELECT \"my_function\"()",
            "SELECT s.f(1)",
            "SELECT 1 INTO t",
            "SELECT 1 INTO TEMP t",
            "LISTEN x",
            "PREPARE p AS SELECT 1",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "CREATE TEMP TABLE t (a int)",
            "DO $$BEGIN PERFORM set_config('a.b', 'c', false); END$$",
            "SELECT $$x$$",
            "CALL p()",
            "BEGIN; SET x = 1",
            "SELECT 1; SELECT 2",
            "COMMIT PREPARED 'x'",
            "SELECT 'unterminated",
            "SELECT /* nested /* comment */ */ 1",
            "COPY t FROM STDIN",
        ] {
            assert_eq!(classify(sql), Kind::Other, "{sql}");
        }
    }

    #[test]
    fn plans() {
        let mut s = Session::default();
        assert_eq!(s.full_plan(true), ResetPlan::Nothing);
        s.before(Kind::Plain);
        assert_eq!(s.full_plan(true), ResetPlan::Nothing);
        assert_eq!(s.full_plan(false), ResetPlan::Full);
        s.before(Kind::Begin);
        s.before(Kind::Insert);
        assert_eq!(
            s.full_plan(true),
            ResetPlan::Light {
                rollback: true,
                sequences: true
            }
        );
        assert!(s.needs_rollback(true));
        s.before(Kind::End);
        assert!(!s.needs_rollback(true));
        s.before(Kind::Other);
        assert_eq!(s.full_plan(true), ResetPlan::Full);
    }
}
