//! `@p1…@pN` placeholders in script SQL, rewritten to each driver's own parameter syntax.
//!
//! Scripts write one syntax for every driver: `@p1` is the first value of the parameter list
//! (`@P1` works too). Before a statement is sent, [`translate`] rewrites each placeholder to
//! `$1` (PostgreSQL), `?1` (SQLite) or `@P1` (MS SQL through tiberius). Values are always
//! bound by the driver, never spliced into the text.
//!
//! What promises the rewrite keeps:
//! - Text that is not SQL code is left alone: `'string literals'` (with `''` inside, and
//!   PostgreSQL `E'…\'…'` escapes), `"quoted identifiers"`, `[bracketed]` identifiers (MS SQL
//!   and SQLite), `` `backticks` `` (SQLite), `-- line` and `/* block */` comments (nested for
//!   PostgreSQL and MS SQL), and PostgreSQL `$tag$ dollar-quoted $tag$` strings.
//! - A placeholder is `@p` or `@P`, digits, and no identifier character after them, not
//!   preceded by an identifier character or another `@` (`@p1x`, `x@p1` and `@@p1` are not
//!   placeholders).
//! - With a non-empty parameter list, every placeholder must be in `1..=N` and every value
//!   must be used, so a mistake is one clear error instead of a different driver error per
//!   server. With an EMPTY list the SQL is sent unchanged, so T-SQL that declares its own
//!   `@p1` variables (a `CREATE PROCEDURE`, a `DECLARE`) works.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::DatabaseError;
use super::hash::FastHash;

/// How many distinct script SQL texts [`Translations`] keeps; past that it starts afresh (a
/// script that builds SQL text per call should not grow the node's memory).
pub const TRANSLATIONS_KEPT: usize = 512;

/// How many rewrites each thread remembers in front of the shared [`Translations`] (see
/// [`RECENT`]).
const RECENT_KEPT: usize = 8;

/// The rewritten SQL of statements already seen, by the script's SQL text, driver and
/// parameter count: a repeated statement is neither scanned nor copied again (the result is
/// shared). Only successful rewrites are kept; a failing one is redone (and fails) each time.
/// One per [`super::Database`], shared by every execution and thread.
///
/// In front of the shared map (a mutex and a hash of the whole text), each thread remembers
/// its last few rewrites of this cache ([`RECENT`]): a script that runs the same statements
/// again and again finds them there with a length check and one comparison of the text, no
/// lock and no hash. The rewrite is a function of the text, driver and count alone, so a
/// remembered one is never stale.
#[derive(Debug)]
pub struct Translations {
    /// Tells this cache's entries in [`RECENT`] from another cache's (never reused).
    id: u64,
    kept: Mutex<HashMap<Box<str>, Vec<Translated>, FastHash>>,
}

impl Default for Translations {
    fn default() -> Translations {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Translations {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kept: Mutex::default(),
        }
    }
}

/// One rewrite a thread remembers: which cache it came from, its key and the shared result.
struct RecentEntry {
    cache: u64,
    driver: Driver,
    parameter_count: usize,
    source: Box<str>,
    sql: Arc<str>,
}

/// A thread's last [`RECENT_KEPT`] rewrites, replaced in turn.
struct Recent {
    entries: [Option<RecentEntry>; RECENT_KEPT],
    next: usize,
}

thread_local! {
    /// See [`Translations`]. Bounded (a few texts per thread) and dropped with the thread.
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent {
            entries: [const { None }; RECENT_KEPT],
            next: 0,
        })
    };
}

#[derive(Debug)]
struct Translated {
    driver: Driver,
    parameter_count: usize,
    sql: Arc<str>,
}

impl Translations {
    /// [`translate`], from the cache when this text was rewritten before for the same driver
    /// and parameter count.
    pub fn translate(
        &self,
        sql: &str,
        driver: Driver,
        parameter_count: usize,
    ) -> Result<Arc<str>, DatabaseError> {
        if let Some(found) = self.recent(sql, driver, parameter_count) {
            return Ok(found);
        }
        if let Some(found) = self.find(sql, driver, parameter_count) {
            self.remember(sql, driver, parameter_count, &found);
            return Ok(found);
        }
        let translated: Arc<str> = translate(sql, driver, parameter_count)?.into();
        self.remember(sql, driver, parameter_count, &translated);
        let mut kept = self.lock();
        if kept.len() >= TRANSLATIONS_KEPT && !kept.contains_key(sql) {
            kept.clear();
        }
        let entries = kept.entry(sql.into()).or_default();
        if !entries
            .iter()
            .any(|entry| entry.driver == driver && entry.parameter_count == parameter_count)
        {
            entries.push(Translated {
                driver,
                parameter_count,
                sql: Arc::clone(&translated),
            });
        }
        Ok(translated)
    }

    /// How many distinct SQL texts are kept (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This thread's remembered rewrite of `sql` by this cache, if any.
    fn recent(&self, sql: &str, driver: Driver, parameter_count: usize) -> Option<Arc<str>> {
        RECENT
            .try_with(|recent| {
                let recent = recent.try_borrow().ok()?;
                recent
                    .entries
                    .iter()
                    .flatten()
                    .find(|entry| {
                        entry.source.len() == sql.len()
                            && entry.cache == self.id
                            && entry.driver == driver
                            && entry.parameter_count == parameter_count
                            && *entry.source == *sql
                    })
                    .map(|entry| Arc::clone(&entry.sql))
            })
            .ok()
            .flatten()
    }

    /// Remember a rewrite in this thread, in place of the oldest remembered one.
    fn remember(&self, sql: &str, driver: Driver, parameter_count: usize, translated: &Arc<str>) {
        let _ = RECENT.try_with(|recent| {
            if let Ok(mut recent) = recent.try_borrow_mut() {
                let slot = recent.next;
                recent.next = (slot + 1) % RECENT_KEPT;
                recent.entries[slot] = Some(RecentEntry {
                    cache: self.id,
                    driver,
                    parameter_count,
                    source: sql.into(),
                    sql: Arc::clone(translated),
                });
            }
        });
    }

    fn find(&self, sql: &str, driver: Driver, parameter_count: usize) -> Option<Arc<str>> {
        self.lock().get(sql).and_then(|entries| {
            entries
                .iter()
                .find(|entry| entry.driver == driver && entry.parameter_count == parameter_count)
                .map(|entry| Arc::clone(&entry.sql))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Vec<Translated>, FastHash>> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a driver writes the parameter `n` (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Driver {
    /// SQLite through rusqlite: `?1`.
    Sqlite,
    /// PostgreSQL through tokio-postgres: `$1`.
    Postgres,
    /// MS SQL through tiberius: `@P1`.
    Mssql,
}

impl Driver {
    /// The name used in the deployment file.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Sqlite => "sqlite",
            Driver::Postgres => "postgres",
            Driver::Mssql => "mssql",
        }
    }

    fn write_parameter(self, index: usize, out: &mut String) {
        out.push_str(match self {
            Driver::Sqlite => "?",
            Driver::Postgres => "$",
            Driver::Mssql => "@P",
        });
        // The decimal digits without the formatting machinery (this runs for every statement).
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = index;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in &digits[start..] {
            out.push(char::from(digit));
        }
    }
}

/// Rewrite the `@pN` placeholders of `sql` for `driver`, checking them against a parameter
/// list of `parameter_count` values (see the module documentation).
pub fn translate(
    sql: &str,
    driver: Driver,
    parameter_count: usize,
) -> Result<String, DatabaseError> {
    if parameter_count == 0 {
        return Ok(sql.to_owned());
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut used = Used::new(parameter_count);
    // `copied_to` is where the next verbatim copy starts; placeholders are the only edits.
    let mut copied_to = 0;
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        let next = bytes.get(position + 1).copied();
        position = match byte {
            b'\'' => {
                let backslash_escapes =
                    driver == Driver::Postgres && is_escape_string_prefix(bytes, position);
                skip_quoted(bytes, position, b'\'', backslash_escapes)
            }
            b'"' => skip_quoted(bytes, position, b'"', false),
            b'[' if driver != Driver::Postgres => skip_quoted(bytes, position, b']', false),
            b'`' if driver == Driver::Sqlite => skip_quoted(bytes, position, b'`', false),
            b'-' if next == Some(b'-') => skip_line_comment(bytes, position),
            b'/' if next == Some(b'*') => {
                skip_block_comment(bytes, position, driver != Driver::Sqlite)
            }
            b'$' if driver == Driver::Postgres => skip_dollar_quoted(bytes, position),
            b'@' => match placeholder_at(bytes, position) {
                Some((index_text, end)) => {
                    let index = parse_index(index_text, parameter_count)?;
                    used.mark(index - 1);
                    out.push_str(&sql[copied_to..position]);
                    driver.write_parameter(index, &mut out);
                    copied_to = end;
                    end
                }
                None => position + 1,
            },
            _ => position + 1,
        };
    }
    out.push_str(&sql[copied_to..]);
    if let Some(unused) = used.first_unused() {
        return Err(DatabaseError::parameter(format!(
            "{parameter_count} parameter value(s) were given but the SQL never uses @p{} \
             (every value must be referenced as @p1..@p{parameter_count})",
            unused + 1
        )));
    }
    Ok(out)
}

/// Which parameters the SQL used: bits for up to 64 (no allocation per statement), else a list.
enum Used {
    Bits { mask: u64, count: usize },
    List(Vec<bool>),
}

impl Used {
    fn new(count: usize) -> Used {
        if count <= 64 {
            Used::Bits { mask: 0, count }
        } else {
            Used::List(vec![false; count])
        }
    }

    fn mark(&mut self, index: usize) {
        match self {
            Used::Bits { mask, .. } => *mask |= 1 << index,
            Used::List(used) => used[index] = true,
        }
    }

    fn first_unused(&self) -> Option<usize> {
        match self {
            Used::Bits { mask, count } => {
                let unused = (!*mask).trailing_zeros() as usize;
                (unused < *count).then_some(unused)
            }
            Used::List(used) => used.iter().position(|used| !used),
        }
    }
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

/// `E'…'` or `e'…'` with the `E` not part of a longer word.
fn is_escape_string_prefix(bytes: &[u8], quote: usize) -> bool {
    quote >= 1
        && matches!(bytes[quote - 1], b'E' | b'e')
        && (quote < 2 || !is_identifier_byte(bytes[quote - 2]))
}

/// The end (exclusive) of a quoted run starting at `start` that closes with `close`, where a
/// doubled `close` is an escaped one. An unterminated run extends to the end of the text (the
/// server reports it).
fn skip_quoted(bytes: &[u8], start: usize, close: u8, backslash_escapes: bool) -> usize {
    let mut position = start + 1;
    while position < bytes.len() {
        let byte = bytes[position];
        if backslash_escapes && byte == b'\\' {
            position += 2;
            continue;
        }
        if byte == close {
            if bytes.get(position + 1) == Some(&close) {
                position += 2;
                continue;
            }
            return position + 1;
        }
        position += 1;
    }
    bytes.len()
}

fn skip_line_comment(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |offset| start + offset + 1)
}

fn skip_block_comment(bytes: &[u8], start: usize, nested: bool) -> usize {
    let mut depth = 1;
    let mut position = start + 2;
    while position < bytes.len() {
        if bytes[position] == b'*' && bytes.get(position + 1) == Some(&b'/') {
            depth -= 1;
            position += 2;
            if depth == 0 || !nested {
                return position;
            }
        } else if nested && bytes[position] == b'/' && bytes.get(position + 1) == Some(&b'*') {
            depth += 1;
            position += 2;
        } else {
            position += 1;
        }
    }
    bytes.len()
}

/// A PostgreSQL dollar-quoted string `$tag$…$tag$` (tag may be empty) starting at `start`, or
/// just the `$` when it is not one (`$1`, an identifier's `$`).
fn skip_dollar_quoted(bytes: &[u8], start: usize) -> usize {
    if start > 0 && is_identifier_byte(bytes[start - 1]) {
        return start + 1;
    }
    let mut tag_end = start + 1;
    while tag_end < bytes.len() && is_identifier_byte(bytes[tag_end]) {
        tag_end += 1;
    }
    let tag_is_valid = bytes.get(tag_end) == Some(&b'$')
        && !bytes
            .get(start + 1)
            .is_some_and(|byte| byte.is_ascii_digit());
    if !tag_is_valid {
        return start + 1;
    }
    let tag = &bytes[start..=tag_end];
    let body_start = tag_end + 1;
    bytes[body_start..]
        .windows(tag.len())
        .position(|window| window == tag)
        .map_or(bytes.len(), |offset| body_start + offset + tag.len())
}

/// `@pDIGITS` at `start` that is a whole placeholder: its digits and its end.
fn placeholder_at(bytes: &[u8], start: usize) -> Option<(&str, usize)> {
    if start > 0 && (is_identifier_byte(bytes[start - 1]) || bytes[start - 1] == b'@') {
        return None;
    }
    if !matches!(bytes.get(start + 1), Some(b'p' | b'P')) {
        return None;
    }
    let digits_start = start + 2;
    let mut end = digits_start;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end == digits_start
        || (end < bytes.len()
            && (is_identifier_byte(bytes[end])
                || bytes[end] == b'@'
                || bytes[end] == b'$'
                || bytes[end] == b'#'))
    {
        return None;
    }
    // The digits are ASCII, so this slice is valid UTF-8.
    std::str::from_utf8(&bytes[digits_start..end])
        .ok()
        .map(|digits| (digits, end))
}

fn parse_index(digits: &str, parameter_count: usize) -> Result<usize, DatabaseError> {
    match digits.parse::<usize>() {
        Ok(index) if (1..=parameter_count).contains(&index) => Ok(index),
        _ => Err(DatabaseError::parameter(format!(
            "the SQL uses @p{digits} but the parameter list has {parameter_count} value(s) \
             (placeholders are @p1..@p{parameter_count})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations_are_cached_per_text_driver_and_count() {
        let cache = Translations::default();
        let sql = "SELECT * FROM t WHERE a = @p1";
        let first = cache.translate(sql, Driver::Sqlite, 1).ok();
        let again = cache.translate(sql, Driver::Sqlite, 1).ok();
        assert_eq!(first.as_deref(), Some("SELECT * FROM t WHERE a = ?1"));
        // The same shared text, not a new copy.
        assert!(matches!((&first, &again), (Some(a), Some(b)) if Arc::ptr_eq(a, b)));
        // Another driver, another count, another text: each its own rewrite.
        let postgres = cache.translate(sql, Driver::Postgres, 1).ok();
        assert_eq!(postgres.as_deref(), Some("SELECT * FROM t WHERE a = $1"));
        let unchanged = cache.translate(sql, Driver::Sqlite, 0).ok();
        assert_eq!(unchanged.as_deref(), Some(sql));
        let other = cache
            .translate("SELECT * FROM t WHERE b = @p1", Driver::Sqlite, 1)
            .ok();
        assert_eq!(other.as_deref(), Some("SELECT * FROM t WHERE b = ?1"));
        assert_eq!(cache.len(), 2);
        // A failing rewrite is not kept and fails again.
        assert!(cache.translate(sql, Driver::Sqlite, 2).is_err());
        assert!(cache.translate(sql, Driver::Sqlite, 2).is_err());
        assert_eq!(
            cache.translate(sql, Driver::Sqlite, 1).ok().as_deref(),
            Some("SELECT * FROM t WHERE a = ?1")
        );
    }

    #[test]
    fn a_threads_remembered_rewrites_are_its_caches_own_and_keyed_like_the_cache() {
        let sql = "SELECT * FROM t WHERE a = @p1";
        let first = Translations::default();
        let remembered = first.translate(sql, Driver::Sqlite, 1).ok();
        // Another cache on the same thread does its own rewrite and keeps it.
        let second = Translations::default();
        let other = second.translate(sql, Driver::Sqlite, 1).ok();
        assert_eq!(second.len(), 1);
        assert!(matches!((&remembered, &other), (Some(a), Some(b)) if !Arc::ptr_eq(a, b)));
        // Driver and count are part of the key here too.
        assert_eq!(
            first.translate(sql, Driver::Mssql, 1).ok().as_deref(),
            Some("SELECT * FROM t WHERE a = @P1")
        );
        assert!(first.translate(sql, Driver::Sqlite, 2).is_err());
        assert_eq!(
            first.translate(sql, Driver::Sqlite, 0).ok().as_deref(),
            Some(sql)
        );
        // Pushed out of this thread's few by other texts, the rewrite comes from the shared
        // map: still the same shared text.
        for index in 0..=RECENT_KEPT {
            let other = format!("SELECT {index} WHERE 1 = @p1");
            assert!(first.translate(&other, Driver::Sqlite, 1).is_ok());
        }
        let again = first.translate(sql, Driver::Sqlite, 1).ok();
        assert!(matches!((&remembered, &again), (Some(a), Some(b)) if Arc::ptr_eq(a, b)));
        // Texts that differ only after the same length are told apart.
        assert_eq!(
            first
                .translate("SELECT * FROM t WHERE b = @p1", Driver::Sqlite, 1)
                .ok()
                .as_deref(),
            Some("SELECT * FROM t WHERE b = ?1")
        );
    }

    #[test]
    fn translations_start_afresh_when_full() {
        let cache = Translations::default();
        for index in 0..TRANSLATIONS_KEPT {
            let sql = format!("SELECT {index} WHERE 1 = @p1");
            assert!(cache.translate(&sql, Driver::Sqlite, 1).is_ok());
        }
        assert_eq!(cache.len(), TRANSLATIONS_KEPT);
        let sql = "SELECT 'new' WHERE 1 = @p1";
        assert_eq!(
            cache.translate(sql, Driver::Sqlite, 1).ok().as_deref(),
            Some("SELECT 'new' WHERE 1 = ?1")
        );
        assert_eq!(cache.len(), 1);
    }

    fn pg(sql: &str, count: usize) -> String {
        translate(sql, Driver::Postgres, count).unwrap_or_else(|error| format!("ERROR {error}"))
    }

    #[test]
    fn rewrites_for_each_driver() {
        let sql = "INSERT INTO t(a, b) VALUES (@p1, @P2)";
        assert_eq!(pg(sql, 2), "INSERT INTO t(a, b) VALUES ($1, $2)");
        assert_eq!(
            translate(sql, Driver::Sqlite, 2).ok().as_deref(),
            Some("INSERT INTO t(a, b) VALUES (?1, ?2)")
        );
        assert_eq!(
            translate(sql, Driver::Mssql, 2).ok().as_deref(),
            Some("INSERT INTO t(a, b) VALUES (@P1, @P2)")
        );
    }

    #[test]
    fn leaves_strings_identifiers_and_comments_alone() {
        assert_eq!(pg("SELECT '@p1', @p1", 1), "SELECT '@p1', $1");
        assert_eq!(pg("SELECT 'it''s @p1', @p1", 1), "SELECT 'it''s @p1', $1");
        assert_eq!(pg(r"SELECT E'\'@p1', @p1", 1), r"SELECT E'\'@p1', $1");
        assert_eq!(
            pg("SELECT \"@p1\" FROM t WHERE x = @p1", 1),
            "SELECT \"@p1\" FROM t WHERE x = $1"
        );
        assert_eq!(pg("SELECT @p1 -- @p2\n", 1), "SELECT $1 -- @p2\n");
        assert_eq!(
            pg("SELECT /* /* @p2 */ @p2 */ @p1", 1),
            "SELECT /* /* @p2 */ @p2 */ $1"
        );
        assert_eq!(
            pg("SELECT $$ @p2 $$, $x$ @p2 $x$, @p1", 1),
            "SELECT $$ @p2 $$, $x$ @p2 $x$, $1"
        );
        let mssql = translate("SELECT [@p2], N'@p2', @p1", Driver::Mssql, 1);
        assert_eq!(mssql.ok().as_deref(), Some("SELECT [@p2], N'@p2', @P1"));
        let sqlite = translate("SELECT `@p2`, @p1", Driver::Sqlite, 1);
        assert_eq!(sqlite.ok().as_deref(), Some("SELECT `@p2`, ?1"));
    }

    #[test]
    fn only_whole_placeholders_are_rewritten() {
        assert_eq!(pg("SELECT @p1x, @p1", 1), "SELECT @p1x, $1");
        assert_eq!(pg("SELECT @@p1, x@p1, @p1", 1), "SELECT @@p1, x@p1, $1");
        assert_eq!(
            pg(
                "SELECT @p10, @p1, @p2, @p3, @p4, @p5, @p6, @p7, @p8, @p9",
                10
            ),
            "SELECT $10, $1, $2, $3, $4, $5, $6, $7, $8, $9"
        );
        assert_eq!(pg("SELECT a @> b, @p1", 1), "SELECT a @> b, $1");
        assert_eq!(pg("SELECT 'é', @p1, 'ü'", 1), "SELECT 'é', $1, 'ü'");
    }

    #[test]
    fn placeholders_must_match_the_parameter_list() {
        assert!(pg("SELECT @p2", 1).contains("uses @p2 but the parameter list has 1"));
        assert!(pg("SELECT @p0", 1).contains("uses @p0"));
        assert!(pg("SELECT @p1", 2).contains("never uses @p2"));
        assert_eq!(pg("SELECT @p1, @p1", 1), "SELECT $1, $1");
    }

    #[test]
    fn long_parameter_lists_are_numbered_and_checked() {
        // 64 values are tracked in a bit mask, more in a list: both ways must agree.
        for count in [63, 64, 65, 130] {
            let placeholders: Vec<String> = (1..=count).map(|n| format!("@p{n}")).collect();
            let expected: Vec<String> = (1..=count).map(|n| format!("${n}")).collect();
            let sql = format!("SELECT {}", placeholders.join(", "));
            assert_eq!(pg(&sql, count), format!("SELECT {}", expected.join(", ")));
            let missing_last = format!("SELECT {}", placeholders[..count - 1].join(", "));
            assert!(
                pg(&missing_last, count).contains(&format!("never uses @p{count}")),
                "{count}"
            );
            let missing_first = format!("SELECT {}", placeholders[1..].join(", "));
            assert!(
                pg(&missing_first, count).contains("never uses @p1 "),
                "{count}"
            );
        }
        assert_eq!(
            translate("SELECT @p1", Driver::Mssql, 1).ok().as_deref(),
            Some("SELECT @P1")
        );
    }

    #[test]
    fn an_empty_parameter_list_sends_the_sql_unchanged() {
        let procedure = "CREATE PROCEDURE p @p1 int AS SELECT @p1";
        assert_eq!(
            translate(procedure, Driver::Mssql, 0).ok().as_deref(),
            Some(procedure)
        );
    }

    #[test]
    fn unterminated_quotes_do_not_panic() {
        for sql in [
            "SELECT '@p1",
            "SELECT \"",
            "SELECT /* ",
            "SELECT $a$ x",
            "SELECT [",
            "@",
            "@p",
            "E'\\",
        ] {
            for driver in [Driver::Sqlite, Driver::Postgres, Driver::Mssql] {
                let _ = translate(sql, driver, 1);
            }
        }
    }
}
