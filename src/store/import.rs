//! Bulk customer import: batches of thousands of rows per transaction so a CSV of a million
//! customers loads fast, with per-row outcomes so one bad row never stops the rest.
//!
//! One algorithm ([`import_batch`]) runs over a small statement runner ([`BatchDb`]) with two
//! implementations: the pool's `Any` connection (PostgreSQL, and SQLite without a file), with
//! many rows per statement, and for a SQLite file a connection of the import's own
//! ([`CustomerImporter`], through SQLite's C API on a blocking thread) with a page cache sized
//! for bulk writes, `BEGIN IMMEDIATE` and one row per prepared statement.

mod raw;

use rustc_hash::FxHashMap as HashMap;
use std::fmt::Write as _;

use futures_util::FutureExt as _;
use sqlx::AnyConnection;
use sqlx::{AssertSqlSafe, Row};

use raw::RawConn;

use super::{Backend, Store, StoreError, StoreResult};
use crate::domain::IdentityKind;
use crate::store::NormalizedCustomer;

#[derive(Debug, Clone)]
pub struct ImportRow {
    /// Line in the source file, for error reports.
    pub line: u64,
    pub customer: NormalizedCustomer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    Created(i64),
    Updated(i64),
    Rejected { line: u64, reason: String },
}

const CUSTOMER_COLS: &str = "id, kind, name, name_search, tier, tags, preferred_channel, \
     language, do_not_call, do_not_email, notes, external_ref, created_at, updated_at";
const COLS_PER_CUSTOMER: usize = 14;
/// Rows per multi-row statement on the pool; full chunks repeat the same SQL, so its prepared
/// statement is reused from the connection's cache. 500 x 14 and 2000 x 4 parameters stay
/// below SQLite's limit of 32,766.
const CUSTOMERS_PER_STATEMENT: usize = 500;
const IDENTITIES_PER_STATEMENT: usize = 2000;
const KEYS_PER_LOOKUP: usize = 1000;

/// SQLite page cache of the import connection, in KiB: the b-trees that take random inserts
/// (identities by value, external references that do not arrive in order) stay in memory
/// instead of being re-read for every row; with the default 2 MB the import rate fell as the
/// table grew (BENCHMARKS.md).
const IMPORT_CACHE_KIB: i64 = 256 * 1024;

/// Imports batches of customer rows. On a SQLite file it holds a connection of its own, so
/// prepared statements and the page cache last from batch to batch.
pub struct CustomerImporter {
    store: Store,
    sqlite: Option<RawConn>,
    /// The WAL checkpoint running beside the import (SQLite file only).
    checkpoint: Option<tokio::task::JoinHandle<()>>,
}

impl Store {
    /// An importer for many batches (the CLI import); see [`CustomerImporter::import`].
    pub async fn customer_importer(&self) -> StoreResult<CustomerImporter> {
        let sqlite = match self.backend {
            Backend::Sqlite => match sqlite_file(self).await? {
                Some(path) => Some(
                    tokio::task::spawn_blocking(move || open_import_connection(&path))
                        .await
                        .map_err(|e| StoreError::Invalid(format!("import connection: {e}")))??,
                ),
                None => None,
            },
            Backend::Postgres => None,
        };
        Ok(CustomerImporter {
            store: self.clone(),
            sqlite,
            checkpoint: None,
        })
    }

    /// Imports a batch in one transaction. Rows are matched to existing customers by
    /// `external_ref`, else by any of their identities; matched customers are updated.
    pub async fn import_customers(
        &self,
        rows: &[ImportRow],
        now: i64,
    ) -> StoreResult<Vec<ImportOutcome>> {
        let mut importer = self.customer_importer().await?;
        let outcomes = importer.import(rows.to_vec(), now).await;
        importer.close().await?;
        outcomes
    }
}

/// The import's connection to a SQLite file, set up for bulk writes.
fn open_import_connection(path: &str) -> StoreResult<RawConn> {
    let mut conn = RawConn::open(path)?;
    conn.busy_timeout(5_000);
    // synchronous as the pool's connections have it (Store::connect); the file is in WAL mode
    // already. No foreign-key checks: every identity the import writes belongs to a customer
    // it read or wrote in the same write transaction, which nobody else can change meanwhile,
    // and the check costs a customer lookup per identity. Temporary b-trees and statement
    // journals, if any, in memory rather than in temp files. Checkpoints run beside the
    // import (checkpoint_in_background) instead of inside its commits.
    conn.exec(&format!(
        "PRAGMA foreign_keys = OFF; PRAGMA synchronous = NORMAL; \
         PRAGMA cache_size = -{IMPORT_CACHE_KIB}; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0"
    ))?;
    Ok(conn)
}

/// Makes what the import committed durable: its commits (synchronous = NORMAL) were not
/// synced. A checkpoint that copies the whole WAL syncs it and then the database file; if a
/// reader holds frames back, the WAL itself is synced.
fn make_durable(conn: &mut RawConn) -> StoreResult<()> {
    if conn.checkpoint_passive()? {
        return Ok(());
    }
    if let Some(file) = conn.filename() {
        std::fs::File::open(format!("{file}-wal"))
            .and_then(|wal| wal.sync_all())
            .map_err(|e| StoreError::Invalid(format!("syncing the WAL of {file}: {e}")))?;
    }
    Ok(())
}

/// The SQLite database file behind the pool, if it is a file.
async fn sqlite_file(store: &Store) -> StoreResult<Option<String>> {
    let file: Option<String> =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_optional(&store.pool)
            .await?;
    Ok(file.filter(|f| !f.is_empty()))
}

impl CustomerImporter {
    /// Imports a batch in one transaction; outcomes are in row order. A database error that
    /// validation did not foresee is isolated by retrying the batch row by row, so it rejects
    /// only its own row. On a SQLite file the batch runs on a blocking thread.
    pub async fn import(
        &mut self,
        rows: Vec<ImportRow>,
        now: i64,
    ) -> StoreResult<Vec<ImportOutcome>> {
        let outcomes = match self.sqlite.take() {
            Some(mut conn) => {
                // The hub's other writers queue for the store's write turn while a batch
                // holds SQLite's write lock, instead of sleeping in its busy handler.
                let turn = self.store.write_turn().await;
                let job = tokio::task::spawn_blocking(move || {
                    // RawConn's runner never suspends, so the future completes in one poll.
                    let outcomes = import_rows(&mut conn, &rows, now)
                        .now_or_never()
                        .unwrap_or_else(|| {
                            Err(StoreError::Invalid("the SQLite import suspended".into()))
                        });
                    (conn, outcomes)
                });
                let (conn, outcomes) = match job.await {
                    Ok(done) => done,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => return Err(StoreError::Invalid(format!("import thread: {e}"))),
                };
                drop(turn);
                self.sqlite = Some(conn);
                outcomes?
            }
            None => import_rows(&mut PoolTx(&self.store), &rows, now).await?,
        };
        self.checkpoint_in_background();
        Ok(outcomes)
    }

    /// Imports through the pool's generic connection even on SQLite (for comparing the paths).
    #[cfg(test)]
    fn generic(store: &Store) -> CustomerImporter {
        CustomerImporter {
            store: store.clone(),
            sqlite: None,
            checkpoint: None,
        }
    }

    /// Copies the WAL into the database file on a pool connection while the import goes on:
    /// the import's own connection never checkpoints, so its commits do not wait for the
    /// copying and syncing (which took about a tenth of a first import's time).
    fn checkpoint_in_background(&mut self) {
        if self.sqlite.is_none() || self.checkpoint.as_ref().is_some_and(|c| !c.is_finished()) {
            return;
        }
        let pool = self.store.pool.clone();
        self.checkpoint = Some(tokio::spawn(async move {
            // PASSIVE: copies what it can without waiting for, or blocking, the import.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!("import checkpoint: {e}");
            }
        }));
    }

    /// Waits for the last checkpoint, makes the import durable and closes its connection.
    pub async fn close(mut self) -> StoreResult<()> {
        if let Some(running) = self.checkpoint.take() {
            let _ = running.await;
        }
        if let Some(mut conn) = self.sqlite.take() {
            tokio::task::spawn_blocking(move || make_durable(&mut conn))
                .await
                .map_err(|e| StoreError::Invalid(format!("import checkpoint: {e}")))??;
        }
        Ok(())
    }
}

/// Where a batch's transaction runs.
trait Transactions {
    /// [`import_batch`] in one transaction, committed when it decided the batch, else rolled
    /// back. The outer error is the transaction's own (begin, commit); the inner one the
    /// batch's.
    async fn batch(
        &mut self,
        rows: &[ImportRow],
        now: i64,
        assume_free: bool,
    ) -> StoreResult<StoreResult<Option<Vec<ImportOutcome>>>>;
}

/// Transactions on the pool.
struct PoolTx<'s>(&'s Store);

impl Transactions for PoolTx<'_> {
    async fn batch(
        &mut self,
        rows: &[ImportRow],
        now: i64,
        assume_free: bool,
    ) -> StoreResult<StoreResult<Option<Vec<ImportOutcome>>>> {
        let backend = self.0.backend;
        let mut tx = self.0.begin_write().await?;
        let result = import_batch(&mut AnyDb(&mut tx, backend), rows, now, assume_free).await;
        match result {
            Ok(Some(outcomes)) => {
                tx.commit().await?;
                Ok(Ok(Some(outcomes)))
            }
            other => {
                tx.rollback().await?;
                Ok(other)
            }
        }
    }
}

impl Transactions for RawConn {
    async fn batch(
        &mut self,
        rows: &[ImportRow],
        now: i64,
        assume_free: bool,
    ) -> StoreResult<StoreResult<Option<Vec<ImportOutcome>>>> {
        // IMMEDIATE: take the write lock before the lookups, so no other writer can change
        // what they found before this batch writes.
        self.exec("BEGIN IMMEDIATE")?;
        let result = import_batch(&mut RawDb(self), rows, now, assume_free).await;
        let end = match result {
            Ok(Some(_)) => self.exec("COMMIT"),
            _ => self.exec("ROLLBACK"),
        };
        if let Err(e) = end {
            // A failed COMMIT leaves the transaction open.
            let _ = self.exec("ROLLBACK");
            return Err(e);
        }
        Ok(result)
    }
}

/// Imports a batch; see [`CustomerImporter::import`].
async fn import_rows(
    tx: &mut impl Transactions,
    rows: &[ImportRow],
    now: i64,
) -> StoreResult<Vec<ImportOutcome>> {
    match import_in_tx(tx, rows, now).await? {
        Ok(outcomes) => Ok(outcomes),
        Err(StoreError::Db(_)) if rows.len() > 1 => {
            let mut outcomes = Vec::with_capacity(rows.len());
            for row in rows {
                match import_in_tx(tx, std::slice::from_ref(row), now).await? {
                    Ok(mut o) => outcomes.append(&mut o),
                    Err(e) => outcomes.push(ImportOutcome::Rejected {
                        line: row.line,
                        reason: e.to_string(),
                    }),
                }
            }
            Ok(outcomes)
        }
        Err(e) => Err(e),
    }
}

/// The outer error is the transaction's own (begin, commit); the inner one the batch's, after
/// which the transaction was rolled back.
async fn import_in_tx(
    tx: &mut impl Transactions,
    rows: &[ImportRow],
    now: i64,
) -> StoreResult<StoreResult<Vec<ImportOutcome>>> {
    for assume_free in [true, false] {
        match tx.batch(rows, now, assume_free).await? {
            Ok(Some(outcomes)) => return Ok(Ok(outcomes)),
            Ok(None) => continue, // rolled back: again, looking every identity up
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Err(StoreError::Invalid(
        "import batch undecided with every identity looked up".into(),
    )))
}

// ---------------------------------------------------------------------------------------------
// The statement runner
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Param<'a> {
    Int(i64),
    Text(&'a str),
    Null,
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(Param::Null, Param::Text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Col {
    Int,
    Text,
    /// An identity kind, decoded without allocating.
    Kind,
}

#[derive(Debug)]
enum Value {
    Int(i64),
    Text(String),
    Kind(IdentityKind),
}

impl Value {
    fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            _ => unreachable!("declared as an integer column"),
        }
    }

    fn into_text(self) -> String {
        match self {
            Value::Text(s) => s,
            _ => unreachable!("declared as a text column"),
        }
    }

    fn kind(&self) -> IdentityKind {
        match self {
            Value::Kind(k) => *k,
            _ => unreachable!("declared as a kind column"),
        }
    }
}

/// What [`import_batch`] needs from a connection inside a transaction.
trait BatchDb {
    fn backend(&self) -> Backend;
    /// Rows (or keys) per statement where `bulk` is the bulk size: a runner whose statements
    /// cost little per call may send fewer.
    fn per_statement(&self, bulk: usize) -> usize {
        bulk
    }
    /// Returns the number of rows changed.
    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64>;
    /// Rows of `cols.len()` values, decoded as `cols` says.
    async fn fetch(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        cols: &[Col],
    ) -> StoreResult<Vec<Vec<Value>>>;
}

/// Runs statements through the pool's `Any` connection (the generic path).
struct AnyDb<'c>(&'c mut AnyConnection, Backend);

/// The arguments of one statement, sized up front: bound one by one, thousands of them
/// regrew and copied their vector a dozen times per statement.
fn arguments(params: &[Param<'_>]) -> StoreResult<sqlx::any::AnyArguments> {
    use sqlx::Arguments as _;
    let mut args = sqlx::any::AnyArguments::default();
    args.reserve(params.len(), 0);
    for p in params {
        match *p {
            Param::Int(i) => args.add(i),
            Param::Text(s) => args.add(s),
            Param::Null => args.add(None::<i64>),
        }
        .map_err(|e| StoreError::Db(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

impl BatchDb for AnyDb<'_> {
    fn backend(&self) -> Backend {
        self.1
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        let q = sqlx::query_with(AssertSqlSafe(sql), arguments(params)?);
        Ok(q.execute(&mut *self.0).await?.rows_affected())
    }

    async fn fetch(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        cols: &[Col],
    ) -> StoreResult<Vec<Vec<Value>>> {
        let q = sqlx::query_with(AssertSqlSafe(sql), arguments(params)?);
        let rows = q.fetch_all(&mut *self.0).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(cols.len());
            for (i, col) in cols.iter().enumerate() {
                values.push(match col {
                    Col::Int => Value::Int(row.try_get(i)?),
                    Col::Text => Value::Text(row.try_get(i)?),
                    Col::Kind => Value::Kind(parse_kind(row.try_get(i)?)?),
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// Runs statements through the import's own SQLite connection, on the calling thread: its
/// futures never suspend.
struct RawDb<'c>(&'c mut RawConn);

impl BatchDb for RawDb<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// One row or key per statement: a prepared statement costs little per call here, a
    /// single-row write needs no statement journal (a multi-row one copies each page it
    /// touches, that the transaction changed before, to undo itself half-way) and a
    /// single-key lookup no temporary b-tree for its `IN` list.
    fn per_statement(&self, _bulk: usize) -> usize {
        1
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        self.0.execute(sql, params)
    }

    async fn fetch(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        cols: &[Col],
    ) -> StoreResult<Vec<Vec<Value>>> {
        self.0.fetch(sql, params, cols)
    }
}

/// SQL text with parameters written as this backend binds them fastest: `?` in order on
/// SQLite (sqlx looks `$n` up by name, quadratic in bulk statements), `$n` on PostgreSQL.
struct Sql {
    text: String,
    backend: Backend,
    params: usize,
}

impl Sql {
    fn new(backend: Backend, start: &str) -> Sql {
        Sql {
            text: start.to_string(),
            backend,
            params: 0,
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// `n` parameters separated by commas.
    fn params(&mut self, n: usize) -> &mut Self {
        for i in 0..n {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.params += 1;
            match self.backend {
                Backend::Sqlite => self.text.push('?'),
                Backend::Postgres => {
                    let _ = write!(self.text, "${}", self.params);
                }
            }
        }
        self
    }

    /// `(…), (…)` for `rows` groups of `cols` parameters.
    fn groups(&mut self, rows: usize, cols: usize) -> &mut Self {
        for r in 0..rows {
            self.push(if r == 0 { "(" } else { ", (" });
            self.params(cols).push(")");
        }
        self
    }

    fn done(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

/// A chunked statement's SQL, built once per chunk length (all chunks but the last share
/// one).
struct SqlByLen<F> {
    build: F,
    last: Option<(usize, String)>,
}

impl<F: Fn(usize) -> String> SqlByLen<F> {
    fn new(build: F) -> Self {
        SqlByLen { build, last: None }
    }

    fn get(&mut self, len: usize) -> &str {
        if self.last.as_ref().is_none_or(|(l, _)| *l != len) {
            self.last = Some((len, (self.build)(len)));
        }
        self.last.as_ref().map_or("", |(_, sql)| sql)
    }
}

// ---------------------------------------------------------------------------------------------
// The algorithm
// ---------------------------------------------------------------------------------------------

fn kind_index(kind: IdentityKind) -> usize {
    match kind {
        IdentityKind::Phone => 0,
        IdentityKind::Email => 1,
        IdentityKind::Fax => 2,
        IdentityKind::Chat => 3,
    }
}

fn parse_kind(s: &str) -> StoreResult<IdentityKind> {
    s.parse().map_err(StoreError::Invalid)
}

/// One batch inside a transaction. With `assume_free`, identities that no customer of the
/// batch holds are taken as free without a lookup; `None` says one was not, and the batch must
/// be rolled back and run again without the assumption.
async fn import_batch(
    db: &mut impl BatchDb,
    rows: &[ImportRow],
    now: i64,
    assume_free: bool,
) -> StoreResult<Option<Vec<ImportOutcome>>> {
    let backend = db.backend();

    // 1. Who exists already: by external reference and by identity.
    let refs: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.customer.external_ref.as_deref())
        .collect();
    let mut by_ref: HashMap<String, i64> =
        HashMap::with_capacity_and_hasher(refs.len(), Default::default());
    let ref_keys: Vec<Param> = refs.iter().map(|r| Param::Text(r)).collect();
    let found_by_ref = fetch_in(
        db,
        "SELECT id, external_ref FROM customers WHERE external_ref IN (",
        ")",
        &ref_keys,
        [Col::Int, Col::Text],
    )
    .await?;
    for [id, r] in found_by_ref {
        by_ref.insert(r.into_text(), id.int());
    }
    // The stored identities of the customers found by reference: they tell who owns those
    // values without looking them up again, and are compared with the rows' in step 5.
    let found: Vec<i64> = by_ref.values().copied().collect();
    // The highest identity id of each customer found, after which its new ones are numbered.
    let mut last_identity: HashMap<i64, i64> = HashMap::default();
    let stored_by_ref = stored_identities(db, &found, &mut last_identity).await?;
    // The owner of each (kind, value), one map per kind so lookups borrow the value.
    let mut owner: [HashMap<&str, i64>; 4] = Default::default();
    for (id, list) in &stored_by_ref {
        for (k, v) in list {
            owner[kind_index(*k)].insert(v, *id);
        }
    }
    // Rows without a reference are matched by their identities: who owns those, and then all
    // identities of the customers found so, as a row may replace them.
    let unowned = |owner: &[HashMap<&str, i64>; 4], k: IdentityKind, v: &str| {
        !owner[kind_index(k)].contains_key(v)
    };
    let of_unreferenced: Vec<&str> = rows
        .iter()
        .filter(|r| r.customer.external_ref.is_none())
        .flat_map(|r| r.customer.identities.iter())
        .filter(|(k, v)| unowned(&owner, *k, v))
        .map(|(_, v)| v.as_str())
        .collect();
    let matched = identity_owners(db, &of_unreferenced).await?;
    for (id, k, v) in &matched {
        owner[kind_index(*k)].insert(v, *id);
    }
    let mut matched_ids: Vec<i64> = matched
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !stored_by_ref.contains_key(id))
        .collect();
    matched_ids.sort_unstable();
    matched_ids.dedup();
    let stored_more = stored_identities(db, &matched_ids, &mut last_identity).await?;
    for (id, list) in &stored_more {
        for (k, v) in list {
            owner[kind_index(*k)].insert(v, *id);
        }
    }
    // Every customer this batch may write is now known with all its identities; any other
    // value is someone else's or free. Unless `assume_free`, ask which; with it, take them as
    // free and let the identity insert tell (step 5): on the first import, where they all are,
    // this saves a lookup per identity.
    let rest: Vec<&str> = if assume_free {
        Vec::new()
    } else {
        rows.iter()
            .flat_map(|r| r.customer.identities.iter())
            .filter(|(k, v)| unowned(&owner, *k, v))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let others = identity_owners(db, &rest).await?;
    for (id, k, v) in &others {
        owner[kind_index(*k)].insert(v, *id);
    }
    let owner_of = |k: IdentityKind, v: &str| owner[kind_index(k)].get(v).copied();

    // 2. Decide each row: update, create, or reject (identity owned by someone else, or a
    //    reference/identity already used by an earlier row of the same batch).
    let mut outcomes: Vec<Option<ImportOutcome>> = vec![None; rows.len()];
    let mut existing_id: Vec<Option<i64>> = vec![None; rows.len()];
    let mut claimed_ref: HashMap<&str, u64> =
        HashMap::with_capacity_and_hasher(rows.len(), Default::default());
    let mut claimed_identity: HashMap<(IdentityKind, &str), u64> =
        HashMap::with_capacity_and_hasher(2 * rows.len(), Default::default());
    for (i, row) in rows.iter().enumerate() {
        let c = &row.customer;
        let mut id = c.external_ref.as_ref().and_then(|r| by_ref.get(r).copied());
        if id.is_none() && c.external_ref.is_none() {
            id = c.identities.iter().find_map(|(k, v)| owner_of(*k, v));
        }
        let mut reject = None;
        if let Some(r) = c.external_ref.as_deref() {
            if let Some(first) = claimed_ref.get(r) {
                reject = Some(format!(
                    "external_ref {r:?} appears again (first on line {first})"
                ));
            }
        }
        for (k, v) in &c.identities {
            if reject.is_some() {
                break;
            }
            if let Some(o) = owner_of(*k, v) {
                if Some(o) != id {
                    reject = Some(format!("{k} {v} already belongs to customer {o}"));
                }
            }
            if let Some(first) = claimed_identity.get(&(*k, v.as_str())) {
                reject = Some(format!("{k} {v} is also on line {first}"));
            }
        }
        if let Some(reason) = reject {
            outcomes[i] = Some(ImportOutcome::Rejected {
                line: row.line,
                reason,
            });
            continue;
        }
        if let Some(r) = c.external_ref.as_deref() {
            claimed_ref.insert(r, row.line);
        }
        for (k, v) in &c.identities {
            claimed_identity.insert((*k, v.as_str()), row.line);
        }
        existing_id[i] = id;
    }

    // 3. Ids: existing ones, and new ones taken from the table's own sequence in row order, so
    //    every accepted row, with or without a reference, is written in bulk.
    let accepted: Vec<usize> = (0..rows.len()).filter(|&i| outcomes[i].is_none()).collect();
    let new_count = accepted
        .iter()
        .filter(|&&i| existing_id[i].is_none())
        .count();
    let mut new_ids = next_ids(db, "customers", new_count).await?.into_iter();
    let mut ids: Vec<Option<i64>> = vec![None; rows.len()];
    for &i in &accepted {
        ids[i] = match existing_id[i] {
            Some(id) => {
                outcomes[i] = Some(ImportOutcome::Updated(id));
                Some(id)
            }
            None => {
                let id = new_ids
                    .next()
                    .ok_or_else(|| StoreError::Invalid("too few new customer ids".into()))?;
                outcomes[i] = Some(ImportOutcome::Created(id));
                Some(id)
            }
        };
    }

    // 4. Customers: upserts by id for new and existing rows (created_at is kept on update).
    //    A customer found by its reference and updated once gets an update that leaves its
    //    external_ref alone (it is the same): setting an indexed column, even to the same
    //    value, rewrites its index entry.
    let mut times_updated: HashMap<i64, u32> = HashMap::default();
    for &i in &accepted {
        if let Some(id) = existing_id[i] {
            *times_updated.entry(id).or_default() += 1;
        }
    }
    let (keep_keys, full): (Vec<usize>, Vec<usize>) = accepted.iter().partition(|&&i| {
        existing_id[i]
            .is_some_and(|id| times_updated[&id] == 1 && rows[i].customer.external_ref.is_some())
    });
    const SET_ALWAYS: &str = "kind = excluded.kind, name = excluded.name, \
         name_search = excluded.name_search, tier = excluded.tier, tags = excluded.tags, \
         preferred_channel = excluded.preferred_channel, language = excluded.language, \
         do_not_call = excluded.do_not_call, do_not_email = excluded.do_not_email, \
         notes = excluded.notes, updated_at = excluded.updated_at";
    for (which, set) in [
        (
            &full,
            format!("{SET_ALWAYS}, external_ref = excluded.external_ref"),
        ),
        (&keep_keys, SET_ALWAYS.to_string()),
    ] {
        let mut sql_for = SqlByLen::new(|len| {
            Sql::new(backend, "INSERT INTO customers (")
                .push(CUSTOMER_COLS)
                .push(") VALUES ")
                .groups(len, COLS_PER_CUSTOMER)
                .push(" ON CONFLICT (id) DO UPDATE SET ")
                .push(&set)
                .done()
        });
        for chunk in which.chunks(db.per_statement(CUSTOMERS_PER_STATEMENT)) {
            let sql = sql_for.get(chunk.len());
            let tags: Vec<String> = chunk
                .iter()
                .map(|&i| rows[i].customer.tags.join(","))
                .collect();
            let mut params = Vec::with_capacity(chunk.len() * COLS_PER_CUSTOMER);
            for (&i, tags) in chunk.iter().zip(&tags) {
                let c = &rows[i].customer;
                params.extend([
                    Param::Int(ids[i].unwrap_or_default()),
                    Param::Text(c.kind.as_str()),
                    Param::Text(&c.name),
                    Param::Text(&c.name_search),
                    Param::Text(&c.tier),
                    Param::Text(tags),
                    c.preferred_channel.map(|p| p.as_str()).into(),
                    c.language.as_deref().into(),
                    Param::Int(c.do_not_call as i64),
                    Param::Int(c.do_not_email as i64),
                    Param::Text(&c.notes),
                    c.external_ref.as_deref().into(),
                    Param::Int(now),
                    Param::Int(now),
                ]);
            }
            db.execute(sql, &params).await?;
        }
    }

    // 5. Identities: each row replaces the kinds it carries. An existing customer whose stored
    //    identities already read as the row's (same values, same order) is left alone; the
    //    others lose the replaced kinds and get the row's values, in row order.
    // Compared only when the customer is updated once in this batch; twice, the rows' writes
    // add up as they always did.
    let compared = |i: usize| {
        existing_id[i]
            .filter(|id| times_updated[id] == 1 && !rows[i].customer.replace_kinds.is_empty())
    };
    let no_identities = Vec::new();
    let stored_of = |id: i64| {
        stored_by_ref
            .get(&id)
            .or_else(|| stored_more.get(&id))
            .unwrap_or(&no_identities)
    };
    let mut rewrite: Vec<usize> = Vec::new();
    for &i in &accepted {
        let c = &rows[i].customer;
        if c.replace_kinds.is_empty() {
            continue; // no identity columns: nothing replaced, nothing added
        }
        let unchanged = compared(i).is_some_and(|id| {
            let now = stored_of(id);
            let kept = now.iter().filter(|(k, _)| !c.replace_kinds.contains(k));
            kept.chain(c.identities.iter()).eq(now.iter())
        });
        if !unchanged {
            rewrite.push(i);
        }
    }
    for &kind in IdentityKind::ALL {
        let mut owners: Vec<i64> = rewrite
            .iter()
            .filter(|&&i| rows[i].customer.replace_kinds.contains(&kind))
            .filter_map(|&i| existing_id[i])
            .collect();
        owners.sort_unstable();
        owners.dedup();
        // `kind || ''` keeps the planner off the (value, kind) index, which would scan every
        // identity: the customer_id index finds the few rows.
        let mut sql_for = SqlByLen::new(|len| {
            Sql::new(
                backend,
                "DELETE FROM customer_identities WHERE kind || '' = ",
            )
            .params(1)
            .push(" AND customer_id IN (")
            .params(len)
            .push(")")
            .done()
        });
        for chunk in owners.chunks(db.per_statement(KEYS_PER_LOOKUP)) {
            let sql = sql_for.get(chunk.len());
            let mut params = vec![Param::Text(kind.as_str())];
            params.extend(chunk.iter().map(|&id| Param::Int(id)));
            db.execute(sql, &params).await?;
        }
    }
    // Ids in row order, as one insert after the other would number them; written in (value,
    // kind) order, the key of the table (SQLite) or of its unique index (PostgreSQL), so it
    // takes its new entries in sequence instead of each at a random page.
    let mut identities: Vec<(i64, i64, IdentityKind, &str)> = Vec::new();
    for &i in &rewrite {
        let Some(customer) = ids[i] else { continue };
        for (k, v) in &rows[i].customer.identities {
            identities.push((0, customer, *k, v.as_str()));
        }
    }
    match backend {
        // A position within the customer (migration 0009), after its stored identities.
        Backend::Sqlite => {
            for identity in identities.iter_mut() {
                let last = last_identity.entry(identity.1).or_default();
                *last += 1;
                identity.0 = *last;
            }
        }
        Backend::Postgres => {
            let ids = next_ids(db, "customer_identities", identities.len()).await?;
            for (identity, id) in identities.iter_mut().zip(ids) {
                identity.0 = id;
            }
        }
    }
    identities.sort_unstable_by(|a, b| (a.3, a.2.as_str()).cmp(&(b.3, b.2.as_str())));
    let mut inserted = 0;
    let mut sql_for = SqlByLen::new(|len| {
        Sql::new(
            backend,
            "INSERT INTO customer_identities (id, customer_id, kind, value) VALUES ",
        )
        .groups(len, 4)
        .push(" ON CONFLICT (value, kind) DO NOTHING")
        .done()
    });
    for chunk in identities.chunks(db.per_statement(IDENTITIES_PER_STATEMENT)) {
        let sql = sql_for.get(chunk.len());
        let mut params = Vec::with_capacity(chunk.len() * 4);
        for (id, customer, k, v) in chunk {
            params.extend([
                Param::Int(*id),
                Param::Int(*customer),
                Param::Text(k.as_str()),
                Param::Text(v),
            ]);
        }
        inserted += db.execute(sql, &params).await?;
    }
    if assume_free && inserted != identities.len() as u64 {
        return Ok(None); // a value taken as free was not: decide again with it looked up
    }
    Ok(Some(outcomes.into_iter().flatten().collect()))
}

/// Who owns each of `values` (of any kind), for those someone does.
async fn identity_owners(
    db: &mut impl BatchDb,
    values: &[&str],
) -> StoreResult<Vec<(i64, IdentityKind, String)>> {
    let keys: Vec<Param> = values.iter().map(|v| Param::Text(v)).collect();
    let rows = fetch_in(
        db,
        "SELECT customer_id, kind, value FROM customer_identities WHERE value IN (",
        ")",
        &keys,
        [Col::Int, Col::Kind, Col::Text],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|[id, kind, value]| (id.int(), kind.kind(), value.into_text()))
        .collect())
}

/// The `N` columns of `select_in` + keys + `after`, the keys sent in `IN` lists as large as
/// the runner takes (see [`BatchDb::per_statement`]).
async fn fetch_in<const N: usize>(
    db: &mut impl BatchDb,
    select_in: &str,
    after: &str,
    keys: &[Param<'_>],
    cols: [Col; N],
) -> StoreResult<Vec<[Value; N]>> {
    let backend = db.backend();
    let mut sql_for =
        SqlByLen::new(|len| Sql::new(backend, select_in).params(len).push(after).done());
    let mut out = Vec::new();
    for chunk in keys.chunks(db.per_statement(KEYS_PER_LOOKUP)) {
        let sql = sql_for.get(chunk.len());
        for row in db.fetch(sql, chunk, &cols).await? {
            let row: [Value; N] = row
                .try_into()
                .map_err(|_| StoreError::Invalid(format!("{select_in}…: {N} columns")))?;
            out.push(row);
        }
    }
    Ok(out)
}

/// `n` unused ids of `table`, ascending: what `n` inserts would have been numbered.
async fn next_ids(db: &mut impl BatchDb, table: &'static str, n: usize) -> StoreResult<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    match db.backend() {
        Backend::Sqlite => {
            // AUTOINCREMENT's rule: above the largest id the table ever had. Inserting an
            // explicit larger id moves sqlite_sequence on, as an automatic one does.
            let sql = format!(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
                 COALESCE((SELECT MAX(id) FROM {table}), 0))"
            );
            let rows = db.fetch(&sql, &[], &[Col::Int]).await?;
            let base = rows.first().and_then(|r| r.first()).map_or(0, Value::int);
            Ok((1..=n as i64).map(|i| base + i).collect())
        }
        Backend::Postgres => {
            let sql = format!(
                "SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1)"
            );
            let rows = db.fetch(&sql, &[Param::Int(n as i64)], &[Col::Int]).await?;
            let mut ids: Vec<i64> = rows
                .iter()
                .filter_map(|r| r.first())
                .map(Value::int)
                .collect();
            ids.sort_unstable();
            Ok(ids)
        }
    }
}

/// The stored identities of `customers`, each customer's in id order; `last_id` gets each
/// one's highest identity id.
async fn stored_identities(
    db: &mut impl BatchDb,
    customers: &[i64],
    last_id: &mut HashMap<i64, i64>,
) -> StoreResult<HashMap<i64, Vec<(IdentityKind, String)>>> {
    let keys: Vec<Param> = customers.iter().map(|&id| Param::Int(id)).collect();
    let rows = fetch_in(
        db,
        "SELECT customer_id, kind, value, id FROM customer_identities WHERE customer_id IN (",
        ") ORDER BY customer_id, id",
        &keys,
        [Col::Int, Col::Kind, Col::Text, Col::Int],
    )
    .await?;
    let mut stored: HashMap<i64, Vec<(IdentityKind, String)>> = HashMap::default();
    for [customer, kind, value, id] in rows {
        let last = last_id.entry(customer.int()).or_default();
        *last = (*last).max(id.int());
        stored
            .entry(customer.int())
            .or_default()
            .push((kind.kind(), value.into_text()));
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::normalize_customer;
    use crate::config::ArchiveConfig;
    use crate::domain::CustomerInput;

    fn row(line: u64, r: Option<&str>, name: &str, phones: &[&str], emails: &[&str]) -> ImportRow {
        let input = CustomerInput {
            name: Some(name.into()),
            external_ref: r.map(String::from),
            phones: Some(phones.iter().map(|s| s.to_string()).collect()),
            emails: (!emails.is_empty()).then(|| emails.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        ImportRow {
            line,
            customer: normalize_customer(&input, None, &ArchiveConfig::default()).unwrap(),
        }
    }

    type Snapshot = (
        Vec<(i64, String, String, Option<String>, i64, i64)>,
        Vec<(i64, i64, String, String)>,
    );

    /// Every customer and identity, ids included.
    async fn snapshot(store: &Store) -> Snapshot {
        let customers = sqlx::query(
            "SELECT id, name, tier || '|' || tags || '|' || name_search, external_ref, created_at, updated_at \
             FROM customers ORDER BY id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
            )
        })
        .collect();
        let identities =
            sqlx::query("SELECT id, customer_id, kind, value FROM customer_identities ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
        (customers, identities)
    }

    async fn sqlite_file_store(dir: &std::path::Path, name: &str) -> Store {
        let url = format!("sqlite://{}?mode=rwc", dir.join(name).display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn the_sqlite_connection_and_the_generic_path_import_alike() {
        let dir = tempfile::tempdir().unwrap();
        let fast = sqlite_file_store(dir.path(), "fast.db").await;
        let generic = sqlite_file_store(dir.path(), "generic.db").await;
        let mut fast_importer = fast.customer_importer().await.unwrap();
        assert!(
            fast_importer.sqlite.is_some(),
            "a SQLite file gets its own connection"
        );
        let mut generic_importer = CustomerImporter::generic(&generic);

        let batches = [
            // New rows: with and without a reference, a reference and a phone used twice.
            vec![
                row(
                    2,
                    Some("R1"),
                    "张三",
                    &["13800000001", "010-1234 5678"],
                    &["a@x.cn"],
                ),
                row(3, Some("R2"), "李四", &["13800000002"], &[]),
                row(4, None, "王五", &["13800000003"], &["w@x.cn"]),
                row(5, Some("R3"), "趙六", &["13800000001"], &[]),
                row(6, Some("R1"), "dup", &["13800000009"], &[]),
                row(7, None, "Alice", &["+1 415 555 0100"], &[]),
            ],
            // Updates: a number replaced, emails added, the row without a reference found by
            // its phone, a phone of someone else, the same customer twice (by ref and phone).
            vec![
                row(
                    2,
                    Some("R1"),
                    "张三丰",
                    &["13800000001", "13800000011"],
                    &["a@x.cn"],
                ),
                row(3, Some("R2"), "李四", &["13800000012"], &["l@x.cn"]),
                row(4, None, "王五五", &["13800000003"], &["w@x.cn"]),
                row(5, Some("R4"), "新客户", &["13800000002"], &[]),
                row(6, None, "Alice A.", &["+1 415 555 0100"], &[]),
                row(7, Some("R5"), "又一个", &["13800000099"], &[]),
                row(8, None, "R5 again", &["13800000099"], &[]),
            ],
            // The same again: nothing to change but names and times.
            vec![
                row(
                    2,
                    Some("R1"),
                    "张三丰",
                    &["13800000001", "13800000011"],
                    &["a@x.cn"],
                ),
                row(3, Some("R2"), "李四", &["13800000012"], &["l@x.cn"]),
                row(4, None, "王五五", &["13800000003"], &["w@x.cn"]),
            ],
            // A new reference with a number of a customer the batch does not touch: the
            // number is taken as free, the insert finds it is not, the batch runs again.
            vec![
                row(2, Some("R7"), "抢号", &["13800000003"], &[]),
                row(3, Some("R8"), "新", &["13800000077"], &[]),
            ],
            // The order of a customer's numbers swapped: rewritten in the new order.
            vec![row(
                2,
                Some("R1"),
                "张三丰",
                &["13800000011", "13800000001"],
                &[],
            )],
            // Two rows for one customer, by reference and by its other number.
            vec![
                row(2, Some("R1"), "张三", &["13800000001"], &[]),
                row(3, None, "张三 too", &["13800000011"], &[]),
            ],
            // The same, the first row keeping the stored name: both are written in row order
            // (the last name wins, with its name_search).
            vec![
                row(2, Some("R2"), "李四", &["13800000012"], &[]),
                row(3, None, "Li  SI", &[], &["l@x.cn"]),
                // Name kept, another number: only the unindexed columns are set.
                row(4, Some("R8"), "新", &["13800000088"], &[]),
                // Name changed by reference.
                row(5, Some("R5"), "又一个 Renamed", &["13800000099"], &[]),
            ],
        ];
        for (n, batch) in batches.iter().enumerate() {
            let now = 1_000 + n as i64;
            let a = fast_importer.import(batch.clone(), now).await.unwrap();
            let b = generic_importer.import(batch.clone(), now).await.unwrap();
            assert_eq!(a, b, "batch {n}");
            if n == 3 {
                assert!(
                    matches!(&a[..], [ImportOutcome::Rejected { line: 2, reason }, ImportOutcome::Created(_)]
                        if reason.contains("already belongs")),
                    "{a:?}"
                );
            }
            assert_eq!(snapshot(&fast).await, snapshot(&generic).await, "batch {n}");
        }
        fast_importer.close().await.unwrap();

        let (customers, identities) = snapshot(&fast).await;
        assert_eq!(customers.len(), 6, "{customers:?}");
        for c in &customers {
            let name_search = c.2.rsplit('|').next().unwrap();
            assert_eq!(name_search, crate::identity::search_key(&c.1), "{c:?}");
        }
        let name_of = |r: &str| {
            let c = customers.iter().find(|c| c.3.as_deref() == Some(r));
            c.map(|c| c.1.as_str())
        };
        // R2 as the row without a reference left it (which also cleared the reference).
        let li = identities.iter().find(|i| i.3 == "l@x.cn").map(|i| i.1);
        let li = customers.iter().find(|c| Some(c.0) == li).unwrap();
        assert_eq!((li.1.as_str(), li.3.as_deref()), ("Li  SI", None));
        assert_eq!(name_of("R8"), Some("新"));
        assert_eq!(name_of("R5"), Some("又一个 Renamed"));
        // Customer 1 (R1): the email its rows never replaced, then both numbers as the last
        // two rows wrote them; its name from the last row.
        let first: Vec<&str> = identities
            .iter()
            .filter(|i| i.1 == 1)
            .map(|i| i.3.as_str())
            .collect();
        assert_eq!(first, ["a@x.cn", "+8613800000001", "+8613800000011"]);
        assert_eq!(customers[0].1, "张三 too");
    }

    #[tokio::test]
    async fn an_unchanged_re_import_leaves_identities_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_file_store(dir.path(), "same.db").await;
        let batch = vec![
            row(
                2,
                Some("R1"),
                "张三",
                &["13800000001", "13800000002"],
                &["a@x.cn"],
            ),
            row(3, None, "李四", &["13800000003"], &[]),
        ];
        let first = store.import_customers(&batch, 1).await.unwrap();
        assert!(matches!(
            first[..],
            [ImportOutcome::Created(_), ImportOutcome::Created(_)]
        ));
        let (_, before) = snapshot(&store).await;
        let again = store.import_customers(&batch, 2).await.unwrap();
        assert!(matches!(
            again[..],
            [ImportOutcome::Updated(_), ImportOutcome::Updated(_)]
        ));
        let (customers, after) = snapshot(&store).await;
        assert_eq!(before, after, "same identities, same ids");
        assert!(
            customers.iter().all(|c| c.4 == 1 && c.5 == 2),
            "{customers:?}"
        );
    }
}
