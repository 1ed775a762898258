//! Bulk customer import: many rows per statement so a CSV of a million customers loads fast,
//! with per-row outcomes so one bad row never stops the rest.

use std::collections::HashMap;

use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use super::{placeholders, Store, StoreError, StoreResult};
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

const CUSTOMER_INSERT_COLS: &str =
    "kind, name, name_search, tier, tags, preferred_channel, language, \
     do_not_call, do_not_email, notes, external_ref, created_at, updated_at";
const COLS_PER_CUSTOMER: usize = 13;
const ROWS_PER_STATEMENT: usize = 500;
const IDENTITIES_PER_STATEMENT: usize = 2000;

impl Store {
    /// Imports a batch in one transaction. Rows are matched to existing customers by
    /// `external_ref`, else by any of their identities; matched customers are updated.
    pub async fn import_customers(
        &self,
        rows: &[ImportRow],
        now: i64,
    ) -> StoreResult<Vec<ImportOutcome>> {
        let mut tx = self.pool.begin().await?;
        match import_batch(self, &mut tx, rows, now).await {
            Ok(outcomes) => {
                tx.commit().await?;
                Ok(outcomes)
            }
            Err(StoreError::Db(_)) if rows.len() > 1 => {
                // Something the validation did not foresee: isolate the culprit row by row.
                tx.rollback().await?;
                let mut outcomes = Vec::with_capacity(rows.len());
                for row in rows {
                    let mut tx = self.pool.begin().await?;
                    match import_batch(self, &mut tx, std::slice::from_ref(row), now).await {
                        Ok(mut o) => {
                            tx.commit().await?;
                            outcomes.append(&mut o);
                        }
                        Err(e) => {
                            tx.rollback().await?;
                            outcomes.push(ImportOutcome::Rejected {
                                line: row.line,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Ok(outcomes)
            }
            Err(e) => Err(e),
        }
    }
}

async fn import_batch(
    store: &Store,
    tx: &mut Transaction<'_, Any>,
    rows: &[ImportRow],
    now: i64,
) -> StoreResult<Vec<ImportOutcome>> {
    let dialect = |sql: String| store.dialect(sql);
    // 1. Who exists already: by external reference and by identity.
    let refs: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.customer.external_ref.as_deref())
        .collect();
    let mut by_ref: HashMap<String, i64> = HashMap::new();
    for chunk in refs.chunks(ROWS_PER_STATEMENT * 4) {
        let sql = format!(
            "SELECT id, external_ref FROM customers WHERE external_ref IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(dialect(sql)));
        for r in chunk {
            q = q.bind(*r);
        }
        for row in q.fetch_all(&mut **tx).await? {
            by_ref.insert(row.try_get("external_ref")?, row.try_get("id")?);
        }
    }
    let values: Vec<&str> = rows
        .iter()
        .flat_map(|r| r.customer.identities.iter().map(|(_, v)| v.as_str()))
        .collect();
    let mut owner: HashMap<(String, String), i64> = HashMap::new();
    for chunk in values.chunks(ROWS_PER_STATEMENT * 4) {
        let sql = format!(
            "SELECT kind, value, customer_id FROM customer_identities WHERE value IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(dialect(sql)));
        for v in chunk {
            q = q.bind(*v);
        }
        for row in q.fetch_all(&mut **tx).await? {
            owner.insert(
                (row.try_get("kind")?, row.try_get("value")?),
                row.try_get("customer_id")?,
            );
        }
    }

    // 2. Decide each row: update, create, or reject (identity owned by someone else, or a
    //    reference/identity already used by an earlier row of the same batch).
    let mut outcomes: Vec<Option<ImportOutcome>> = vec![None; rows.len()];
    let mut existing_id: Vec<Option<i64>> = vec![None; rows.len()];
    let mut claimed_ref: HashMap<&str, u64> = HashMap::new();
    let mut claimed_identity: HashMap<(IdentityKind, &str), u64> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let c = &row.customer;
        let mut id = c.external_ref.as_ref().and_then(|r| by_ref.get(r).copied());
        if id.is_none() && c.external_ref.is_none() {
            id = c
                .identities
                .iter()
                .find_map(|(k, v)| owner.get(&(k.as_str().to_string(), v.clone())).copied());
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
            if let Some(o) = owner.get(&(k.as_str().to_string(), v.clone())) {
                if Some(*o) != id {
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

    // 3. Write customers: updates by primary key, new rows with a reference in bulk, new rows
    //    without one singly (their ids cannot be matched back from a bulk RETURNING).
    let mut ids: Vec<Option<i64>> = vec![None; rows.len()];
    let updates: Vec<usize> = (0..rows.len())
        .filter(|&i| outcomes[i].is_none() && existing_id[i].is_some())
        .collect();
    for chunk in updates.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO customers (id, {CUSTOMER_INSERT_COLS}) VALUES {} ON CONFLICT (id) DO UPDATE SET \
             kind = excluded.kind, name = excluded.name, name_search = excluded.name_search, tier = excluded.tier, \
             tags = excluded.tags, preferred_channel = excluded.preferred_channel, language = excluded.language, \
             do_not_call = excluded.do_not_call, do_not_email = excluded.do_not_email, notes = excluded.notes, \
             external_ref = excluded.external_ref, updated_at = excluded.updated_at",
            value_groups(chunk.len(), COLS_PER_CUSTOMER + 1)
        );
        let mut q = sqlx::query(AssertSqlSafe(dialect(sql)));
        for &i in chunk {
            q = bind_customer(q.bind(existing_id[i]), &rows[i].customer, now);
        }
        q.execute(&mut **tx).await?;
        for &i in chunk {
            ids[i] = existing_id[i];
            outcomes[i] = existing_id[i].map(ImportOutcome::Updated);
        }
    }
    let new_with_ref: Vec<usize> = (0..rows.len())
        .filter(|&i| outcomes[i].is_none() && rows[i].customer.external_ref.is_some())
        .collect();
    for chunk in new_with_ref.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO customers ({CUSTOMER_INSERT_COLS}) VALUES {} RETURNING id, external_ref",
            value_groups(chunk.len(), COLS_PER_CUSTOMER)
        );
        let mut q = sqlx::query(AssertSqlSafe(dialect(sql)));
        for &i in chunk {
            q = bind_customer(q, &rows[i].customer, now);
        }
        let mut new_ids: HashMap<String, i64> = HashMap::new();
        for row in q.fetch_all(&mut **tx).await? {
            new_ids.insert(row.try_get("external_ref")?, row.try_get("id")?);
        }
        for &i in chunk {
            let id = rows[i]
                .customer
                .external_ref
                .as_ref()
                .and_then(|r| new_ids.get(r).copied());
            ids[i] = id;
            outcomes[i] = id.map(ImportOutcome::Created);
        }
    }
    for i in 0..rows.len() {
        if outcomes[i].is_some() {
            continue;
        }
        let sql = format!(
            "INSERT INTO customers ({CUSTOMER_INSERT_COLS}) VALUES {} RETURNING id",
            value_groups(1, COLS_PER_CUSTOMER)
        );
        let row = bind_customer(
            sqlx::query(AssertSqlSafe(dialect(sql))),
            &rows[i].customer,
            now,
        )
        .fetch_one(&mut **tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        ids[i] = Some(id);
        outcomes[i] = Some(ImportOutcome::Created(id));
    }

    // 4. Identities: replace the kinds each row carries, then insert its values in bulk.
    for kind in IdentityKind::ALL {
        let owners: Vec<i64> = (0..rows.len())
            .filter(|&i| rows[i].customer.replace_kinds.contains(kind))
            .filter_map(|i| ids[i])
            .collect();
        for chunk in owners.chunks(ROWS_PER_STATEMENT * 4) {
            let sql = format!(
                // `kind || ''` keeps the planner off the (kind, value) index, which would scan
                // every identity of that kind: the customer_id index finds the few rows.
                "DELETE FROM customer_identities WHERE kind || '' = $1 AND customer_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(dialect(sql))).bind(kind.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await?;
        }
    }
    let identities: Vec<(i64, IdentityKind, &str)> = (0..rows.len())
        .filter_map(|i| ids[i].map(|id| (i, id)))
        .flat_map(|(i, id)| {
            rows[i]
                .customer
                .identities
                .iter()
                .map(move |(k, v)| (id, *k, v.as_str()))
        })
        .collect();
    for chunk in identities.chunks(IDENTITIES_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO customer_identities (customer_id, kind, value) VALUES {} ON CONFLICT (kind, value) DO NOTHING",
            value_groups(chunk.len(), 3)
        );
        let mut q = sqlx::query(AssertSqlSafe(dialect(sql)));
        for (id, k, v) in chunk {
            q = q.bind(*id).bind(k.as_str()).bind(*v);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(outcomes.into_iter().flatten().collect())
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

fn bind_customer<'q>(q: AnyQuery<'q>, c: &'q NormalizedCustomer, now: i64) -> AnyQuery<'q> {
    q.bind(c.kind.as_str())
        .bind(c.name.as_str())
        .bind(c.name_search.as_str())
        .bind(c.tier.as_str())
        .bind(c.tags.join(","))
        .bind(c.preferred_channel.map(|p| p.as_str()))
        .bind(c.language.as_deref())
        .bind(c.do_not_call as i64)
        .bind(c.do_not_email as i64)
        .bind(c.notes.as_str())
        .bind(c.external_ref.as_deref())
        .bind(now)
        .bind(now)
}

/// `($1, $2, $3), ($4, $5, $6)` for `rows` groups of `cols` parameters.
fn value_groups(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(r * cols + 1, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}
