//! The import's own SQLite connection through SQLite's C API: prepared statements stay
//! prepared for the whole import, values are bound in place (no copy per value) and stepping
//! runs on the calling thread, where sqlx hands every statement and its rows to a worker
//! thread and back.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr;

use libsqlite3_sys as ffi;

use super::{Col, Param, Value};
use crate::store::{StoreError, StoreResult};

/// An error SQLite returned, as sqlx would report it (`StoreError::Db`), so the importer
/// treats it like any other database error (the batch is retried row by row).
#[derive(Debug)]
struct RawError {
    code: c_int,
    message: String,
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for RawError {}

impl sqlx::error::DatabaseError for RawError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn store_error(code: c_int, message: String) -> StoreError {
    StoreError::Db(sqlx::Error::Database(Box::new(RawError { code, message })))
}

/// Distinct statements kept prepared. The import sends one row or key per statement (about
/// ten distinct ones); the bound keeps the linear search short should multi-row statements,
/// whose last chunk per batch has a size of its own, ever run here.
const MAX_STATEMENTS: usize = 64;

/// One SQLite connection, used by one thread at a time (it moves between blocking threads).
pub(super) struct RawConn {
    db: *mut ffi::sqlite3,
    /// Searched by text: a handful of statements, most told apart by their length, costs less
    /// than hashing a few hundred bytes of SQL on every execution.
    statements: Vec<(String, *mut ffi::sqlite3_stmt)>,
}

// SAFETY: the handle and its statements are only used through `&mut RawConn`, so by one
// thread at a time; SQLite connections may move between threads (the bundled library is
// built thread-safe).
unsafe impl Send for RawConn {}

impl RawConn {
    /// Opens an existing database file read-write.
    pub(super) fn open(path: &str) -> StoreResult<RawConn> {
        let c_path = CString::new(path)
            .map_err(|_| StoreError::Invalid(format!("database path {path:?} has a NUL")))?;
        let mut db = ptr::null_mut();
        // NOMUTEX: `&mut self` already keeps the connection to one thread at a time, so
        // SQLite's own per-call connection mutex is pure cost.
        let flags =
            ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_EXRESCODE | ffi::SQLITE_OPEN_NOMUTEX;
        // SAFETY: valid C string and out-pointer; the handle is closed in Drop (also when
        // opening failed, as SQLite asks).
        let rc = unsafe { ffi::sqlite3_open_v2(c_path.as_ptr(), &mut db, flags, ptr::null()) };
        let conn = RawConn {
            db,
            statements: Vec::new(),
        };
        if rc != ffi::SQLITE_OK {
            return Err(conn.error(rc));
        }
        Ok(conn)
    }

    fn error(&self, rc: c_int) -> StoreError {
        // SAFETY: errmsg returns a NUL-terminated string owned by the connection (or a static
        // one for a null handle), copied before any other call.
        let message = unsafe {
            let m = if self.db.is_null() {
                ffi::sqlite3_errstr(rc)
            } else {
                ffi::sqlite3_errmsg(self.db)
            };
            CStr::from_ptr(m).to_string_lossy().into_owned()
        };
        store_error(rc, message)
    }

    /// Runs statements without parameters or results (PRAGMA, BEGIN, COMMIT).
    pub(super) fn exec(&mut self, sql: &str) -> StoreResult<()> {
        let c_sql = CString::new(sql).map_err(|_| StoreError::Invalid("SQL with a NUL".into()))?;
        // SAFETY: valid handle and C string; no callback.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db,
                c_sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc));
        }
        Ok(())
    }

    pub(super) fn busy_timeout(&mut self, ms: c_int) {
        // SAFETY: valid handle.
        unsafe { ffi::sqlite3_busy_timeout(self.db, ms) };
    }

    /// `PRAGMA wal_checkpoint(PASSIVE)`: whether every frame of the WAL is in the database
    /// file now (readers of older snapshots can hold some back).
    pub(super) fn checkpoint_passive(&mut self) -> StoreResult<bool> {
        let (mut log, mut done) = (0, 0);
        // SAFETY: valid handle; null schema name means every attached database.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.db,
                ptr::null(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                &mut log,
                &mut done,
            )
        };
        if rc != ffi::SQLITE_OK && rc != ffi::SQLITE_BUSY {
            return Err(self.error(rc));
        }
        Ok(rc == ffi::SQLITE_OK && log == done)
    }

    /// The database file's path, as SQLite resolved it.
    pub(super) fn filename(&self) -> Option<String> {
        // SAFETY: valid handle and schema name; the result is owned by the connection.
        let f = unsafe { ffi::sqlite3_db_filename(self.db, c"main".as_ptr()) };
        if f.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated.
        let f = unsafe { CStr::from_ptr(f) }.to_string_lossy().into_owned();
        (!f.is_empty()).then_some(f)
    }

    /// The prepared statement for `sql`, prepared on first use.
    fn statement(&mut self, sql: &str) -> StoreResult<*mut ffi::sqlite3_stmt> {
        if let Some((_, stmt)) = self.statements.iter().find(|(s, _)| s == sql) {
            return Ok(*stmt);
        }
        if self.statements.len() >= MAX_STATEMENTS {
            self.finalize_all();
        }
        let len = c_int::try_from(sql.len())
            .map_err(|_| StoreError::Invalid("statement too long".into()))?;
        let mut stmt = ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes (no NUL needed with an explicit length).
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db,
                sql.as_ptr() as *const c_char,
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc));
        }
        self.statements.push((sql.to_string(), stmt));
        Ok(stmt)
    }

    fn finalize_all(&mut self) {
        for (_, stmt) in self.statements.drain(..) {
            // SAFETY: prepared by this connection, finalized once (removed from the map).
            unsafe { ffi::sqlite3_finalize(stmt) };
        }
    }

    /// Runs `sql` with `params`, calling `each_row` for each result row; the statement is
    /// reset (and so releases its locks and the borrowed values) before return.
    fn run(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        each_row: impl FnMut(*mut ffi::sqlite3_stmt) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let stmt = self.statement(sql)?;
        let result = self.bind_and_step(stmt, params, each_row);
        // SAFETY: live statement. Its result repeats the step's error, already taken.
        unsafe { ffi::sqlite3_reset(stmt) };
        result
    }

    fn bind_and_step(
        &self,
        stmt: *mut ffi::sqlite3_stmt,
        params: &[Param<'_>],
        mut each_row: impl FnMut(*mut ffi::sqlite3_stmt) -> StoreResult<()>,
    ) -> StoreResult<()> {
        // SAFETY (the binds): `stmt` is a live statement of this connection. Text is bound
        // SQLITE_STATIC: SQLite reads it only while stepping below, and every execution binds
        // every parameter again first, so no stale pointer is ever read.
        let count = unsafe { ffi::sqlite3_bind_parameter_count(stmt) };
        if count as usize != params.len() {
            return Err(StoreError::Invalid(format!(
                "{} parameters for a statement with {count}",
                params.len()
            )));
        }
        for (i, p) in params.iter().enumerate() {
            let i = i as c_int + 1;
            let rc = match *p {
                Param::Int(v) => unsafe { ffi::sqlite3_bind_int64(stmt, i, v) },
                Param::Text(s) => {
                    let len = c_int::try_from(s.len())
                        .map_err(|_| StoreError::Invalid("value too long".into()))?;
                    unsafe {
                        ffi::sqlite3_bind_text(
                            stmt,
                            i,
                            s.as_ptr() as *const c_char,
                            len,
                            ffi::SQLITE_STATIC(),
                        )
                    }
                }
                Param::Null => unsafe { ffi::sqlite3_bind_null(stmt, i) },
            };
            if rc != ffi::SQLITE_OK {
                return Err(self.error(rc));
            }
        }
        loop {
            // SAFETY: live statement, all parameters bound.
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_ROW => each_row(stmt)?,
                ffi::SQLITE_DONE => return Ok(()),
                rc => return Err(self.error(rc)),
            }
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub(super) fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        self.run(sql, params, |_| Ok(()))?;
        // SAFETY: valid handle.
        Ok(unsafe { ffi::sqlite3_changes64(self.db) } as u64)
    }

    /// Runs a query; each row's columns decoded as `cols` says.
    pub(super) fn fetch(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        cols: &[Col],
    ) -> StoreResult<Vec<Vec<Value>>> {
        let mut out = Vec::new();
        self.run(sql, params, |stmt| {
            let mut values = Vec::with_capacity(cols.len());
            for (i, col) in cols.iter().enumerate() {
                let i = i as c_int;
                values.push(match col {
                    // SAFETY: a row is current; `i` is below the statement's column count
                    // (the callers select `cols.len()` columns).
                    Col::Int => Value::Int(unsafe { ffi::sqlite3_column_int64(stmt, i) }),
                    Col::Text => Value::Text(with_text(stmt, i, |s| Ok(s.to_string()))?),
                    Col::Kind => Value::Kind(with_text(stmt, i, super::parse_kind)?),
                });
            }
            out.push(values);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Column `i` of the current row as text, for `f` to copy or decode.
fn with_text<T>(
    stmt: *mut ffi::sqlite3_stmt,
    i: c_int,
    f: impl FnOnce(&str) -> StoreResult<T>,
) -> StoreResult<T> {
    // SAFETY: a row is current; column_text before column_bytes, as SQLite documents. The
    // bytes stay valid until the statement steps again or is reset, after `f` returned.
    let bytes = unsafe {
        let p = ffi::sqlite3_column_text(stmt, i);
        if p.is_null() {
            return Err(StoreError::Invalid("NULL where text was expected".into()));
        }
        let n = ffi::sqlite3_column_bytes(stmt, i);
        std::slice::from_raw_parts(p, n as usize)
    };
    f(std::str::from_utf8(bytes).map_err(|e| StoreError::Invalid(format!("stored text: {e}")))?)
}

impl Drop for RawConn {
    fn drop(&mut self) {
        self.finalize_all();
        // SAFETY: every statement is finalized; the handle is not used again. close (not
        // close_v2) would fail only with unfinalized statements.
        unsafe { ffi::sqlite3_close(self.db) };
    }
}
