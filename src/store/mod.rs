//! The store: one interface over SQLite (embedded default) and PostgreSQL.
//!
//! SQL is written once in the dialect both backends accept (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`); the few differences are chosen by [`Backend`]. Times are unix milliseconds,
//! booleans 0/1 integers, money minor units, so every value maps the same on both.

mod acd;
mod chat;
mod contacts;
mod customers;
mod email;
mod import;
mod users;
mod voice;

pub use acd::{format_skills, parse_skills, AgentProfile, ResumableContact};
pub use chat::{AttachmentRow, CannedResponse, ChatRow, MessageRow, NewChat, NewInbound, Visitor};
pub use contacts::{AgentEventRow, ContactFilter, NewContact};
pub use customers::{CustomerSearch, NormalizedCustomer};
pub use email::{
    ConversationRow, EmailFile, EmailRouting, EmailStored, EmailView, NewEmail, OutboxEntry,
    OutboxItem, OutboxStatus, ThreadFacts,
};
pub use import::{CustomerImporter, ImportOutcome, ImportRow};
pub use users::FailedLogins;
pub use voice::{ContactEventRow, Recording, SipAccount};

use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule would be broken (e.g. a phone number owned by another customer).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite: the one connection that writes (see `connect`); PostgreSQL: `pool` again.
    write_pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer: write transactions queue here instead of in SQLite's busy
    /// handler, which sleeps 1–100 ms between retries while the lock is taken.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction; on SQLite it also holds the process's write turn until it ends.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// Connects to `sqlite://…` or `postgres://…`. A SQLite file and its directory are created
    /// when missing.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL (expected sqlite:// or postgres://): {}",
                redact_url(url)
            )));
        };
        if backend == Backend::Sqlite {
            if let Some(dir) = sqlite_dir(url) {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    StoreError::Invalid(format!("cannot create data directory {dir}: {e}"))
                })?;
            }
        }
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; NORMAL is durable in WAL mode
                        // except for the last commits on power loss, never corrupting.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        // Checkpoints copy each changed page once however often it changed:
                        // a 64 MiB WAL instead of the 4 MiB default copies the hot index and
                        // table-tail pages far fewer times and fsyncs 16x less often.
                        conn.execute("PRAGMA wal_autocheckpoint = 16384").await?;
                        // Every commit by another connection empties this one's page cache;
                        // mapped pages are re-read without a syscall and a copy.
                        conn.execute("PRAGMA mmap_size = 268435456").await?;
                    }
                    Ok(())
                })
            });
        let pool = options.clone().connect(url).await?;
        // SQLite takes one writer at a time, so every write goes through one connection of its
        // own: its page cache then lasts from one transaction to the next (a commit by another
        // connection empties it), and reads keep the pool's four.
        let write_pool = match backend {
            Backend::Sqlite => options.clone().max_connections(1).connect(url).await?,
            Backend::Postgres => pool.clone(),
        };
        Ok(Store {
            pool,
            write_pool,
            backend,
            writer: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This store with every statement, reads too, on the writing connection (SQLite), for a
    /// service whose reads lead up to its writes. Its reads then wait for other writes, and it
    /// must not read through the store while it holds a write transaction.
    pub fn writer_side(&self) -> Store {
        Store {
            pool: self.write_pool.clone(),
            ..self.clone()
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> StoreResult<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// A transaction that will write after reading. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred one that reads first fails with SQLITE_BUSY_SNAPSHOT
    /// when another writer commits in between, which the busy timeout does not cover.
    pub(crate) async fn begin_write(&self) -> StoreResult<WriteTx> {
        let turn = self.write_turn().await;
        let tx = match self.backend {
            Backend::Sqlite => self.write_pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write_pool.begin().await?,
        };
        Ok(WriteTx { tx, _turn: turn })
    }

    /// A single write outside a transaction waits its turn too on SQLite: holding the lock
    /// while a transaction waits would send that one into the sleeping busy handler.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.write_pool.close().await;
    }
}

fn sqlite_dir(url: &str) -> Option<String> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let dir = std::path::Path::new(path).parent()?;
    let s = dir.to_string_lossy().to_string();
    (!s.is_empty()).then_some(s)
}

/// A database URL fit for logs: the password is hidden.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// SQL for this backend. For SQLite, `$1, $2, …` used once each and in order become plain
    /// `?`: sqlx binds numbered SQLite parameters by name lookup, which made bulk statements with
    /// thousands of parameters over ten times slower than positional ones (measured in
    /// benches/csv_import.rs). Other SQL is left as written.
    pub(crate) fn dialect(&self, sql: String) -> String {
        dialect(self.backend, sql)
    }
}

fn dialect(backend: Backend, sql: String) -> String {
    if backend != Backend::Sqlite {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1u32;
    let mut rest = sql.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let digits: String = rest[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        if digits.parse::<u32>().ok() != Some(expected) {
            return sql;
        }
        out.push('?');
        expected += 1;
        rest = &rest[i + 1 + digits.len()..];
    }
    out.push_str(rest);
    out
}

/// `$start, $start+1, …` for `n` parameters.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2, $3), ($4, $5, $6)` for `rows` groups of `cols` parameters.
pub(crate) fn value_groups(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(r * cols + 1, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) fn get_enum<T: FromStr<Err = String>>(row: &AnyRow, col: &str) -> StoreResult<T> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(StoreError::Invalid)
}

pub(crate) fn get_opt_enum<T: FromStr<Err = String>>(
    row: &AnyRow,
    col: &str,
) -> StoreResult<Option<T>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| s.parse().map_err(StoreError::Invalid))
        .transpose()
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redact_url("postgres://hub:secret@localhost/hub"),
            "postgres://hub:***@localhost/hub"
        );
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }

    #[test]
    fn sqlite_bulk_parameters_become_positional_only_when_in_order() {
        let s = |sql: &str| dialect(Backend::Sqlite, sql.to_string());
        assert_eq!(s("VALUES ($1, $2), ($3, $4)"), "VALUES (?, ?), (?, ?)");
        assert_eq!(s("a = $1 AND b = $1"), "a = $1 AND b = $1");
        assert_eq!(s("a = $2 AND b = $1"), "a = $2 AND b = $1");
        assert_eq!(s("no params"), "no params");
        assert_eq!(
            dialect(Backend::Postgres, "VALUES ($1, $2)".into()),
            "VALUES ($1, $2)"
        );
    }

    #[test]
    fn sqlite_dir_is_found() {
        assert_eq!(
            sqlite_dir("sqlite://./data/contact-hub.db?mode=rwc").as_deref(),
            Some("./data")
        );
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
    }
}
