//! Customers, identities, archive records, cases and the screen-pop query.

use chrono::NaiveDate;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{
    get_enum, get_opt_enum, is_unique_violation, like_escape, placeholders, Backend, Store,
    StoreError, StoreResult,
};
use crate::archive::{self, Records, ScreenPop};
use crate::config::ArchiveConfig;
use crate::domain::{
    rfc3339, ArchiveRecord, ArchiveRecordInput, Case, Channel, Customer, CustomerKind, Identity,
    IdentityKind,
};
use crate::identity::{normalize_email, normalize_phone, search_key};

/// A validated customer ready to store (see [`crate::archive::normalize_customer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedCustomer {
    pub kind: CustomerKind,
    pub name: String,
    pub name_search: String,
    pub tier: String,
    pub tags: Vec<String>,
    pub preferred_channel: Option<Channel>,
    pub language: Option<String>,
    pub do_not_call: bool,
    pub do_not_email: bool,
    pub notes: String,
    pub external_ref: Option<String>,
    pub identities: Vec<(IdentityKind, String)>,
    /// Identity kinds whose stored values are replaced by `identities` (others are kept).
    pub replace_kinds: Vec<IdentityKind>,
}

#[derive(Debug, Clone)]
pub struct CustomerSearch {
    pub q: String,
    pub limit: i64,
    pub default_region: String,
}

pub(super) const CUSTOMER_COLS: &str = "id, kind, name, tier, tags, preferred_channel, language, \
     do_not_call, do_not_email, notes, external_ref, created_at, updated_at";

pub(super) fn customer_from_row(row: &AnyRow) -> StoreResult<Customer> {
    let tags: String = row.try_get("tags")?;
    Ok(Customer {
        id: row.try_get("id")?,
        kind: get_enum(row, "kind")?,
        name: row.try_get("name")?,
        tier: row.try_get("tier")?,
        tags: tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        preferred_channel: get_opt_enum(row, "preferred_channel")?,
        language: row.try_get("language")?,
        do_not_call: row.try_get::<i64, _>("do_not_call")? != 0,
        do_not_email: row.try_get::<i64, _>("do_not_email")? != 0,
        notes: row.try_get("notes")?,
        external_ref: row.try_get("external_ref")?,
        identities: Vec::new(),
        created_at: rfc3339(row.try_get("created_at")?),
        updated_at: rfc3339(row.try_get("updated_at")?),
    })
}

fn record_from_row(row: &AnyRow) -> StoreResult<ArchiveRecord> {
    Ok(ArchiveRecord {
        id: row.try_get("id")?,
        category: get_enum(row, "category")?,
        reference: row.try_get("reference")?,
        description: row.try_get("description")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        status: row.try_get("status")?,
        occurred_on: row.try_get("occurred_on")?,
        expires_on: row.try_get("expires_on")?,
    })
}

fn case_from_row(row: &AnyRow) -> StoreResult<Case> {
    Ok(Case {
        id: row.try_get("id")?,
        customer_id: row.try_get("customer_id")?,
        subject: row.try_get("subject")?,
        status: get_enum(row, "status")?,
        created_at: rfc3339(row.try_get("created_at")?),
    })
}

impl Store {
    pub async fn create_customer(&self, c: &NormalizedCustomer, now: i64) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO customers (kind, name, name_search, tier, tags, preferred_channel, language, \
             do_not_call, do_not_email, notes, external_ref, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
        )
        .bind(c.kind.as_str())
        .bind(&c.name)
        .bind(&c.name_search)
        .bind(&c.tier)
        .bind(c.tags.join(","))
        .bind(c.preferred_channel.map(|p| p.as_str()))
        .bind(c.language.as_deref())
        .bind(c.do_not_call as i64)
        .bind(c.do_not_email as i64)
        .bind(&c.notes)
        .bind(c.external_ref.as_deref())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "a customer with external_ref {:?} already exists",
                    c.external_ref.as_deref().unwrap_or("")
                ))
            } else {
                e.into()
            }
        })?;
        let id: i64 = row.try_get("id")?;
        set_identities(&mut tx, self.backend, id, &c.identities, &c.replace_kinds).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn update_customer(
        &self,
        id: i64,
        c: &NormalizedCustomer,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE customers SET kind = $1, name = $2, name_search = $3, tier = $4, tags = $5, \
             preferred_channel = $6, language = $7, do_not_call = $8, do_not_email = $9, notes = $10, \
             external_ref = $11, updated_at = $12 WHERE id = $13",
        )
        .bind(c.kind.as_str())
        .bind(&c.name)
        .bind(&c.name_search)
        .bind(&c.tier)
        .bind(c.tags.join(","))
        .bind(c.preferred_channel.map(|p| p.as_str()))
        .bind(c.language.as_deref())
        .bind(c.do_not_call as i64)
        .bind(c.do_not_email as i64)
        .bind(&c.notes)
        .bind(c.external_ref.as_deref())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("another customer has this external_ref".into())
            } else {
                e.into()
            }
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        set_identities(&mut tx, self.backend, id, &c.identities, &c.replace_kinds).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_customer(&self, id: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM customers WHERE id = $1")
            .bind(id)
            .execute(&self.write_pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn get_customer(&self, id: i64) -> StoreResult<Customer> {
        self.customers_by_ids(&[id])
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    pub async fn customer_count(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM customers")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Customers with their identities, in the order of `ids`.
    pub async fn customers_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<Customer>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {CUSTOMER_COLS} FROM customers WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(self.dialect(sql)));
        for id in ids {
            q = q.bind(*id);
        }
        let mut customers = q
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(customer_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        self.add_identities(&mut customers).await?;
        customers.sort_by_key(|c| ids.iter().position(|i| *i == c.id));
        Ok(customers)
    }

    /// Fills in the customers' identities, in the order they were stored.
    async fn add_identities(&self, customers: &mut [Customer]) -> StoreResult<()> {
        if customers.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT customer_id, kind, value FROM customer_identities WHERE customer_id IN ({}) ORDER BY id",
            placeholders(1, customers.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(self.dialect(sql)));
        for c in customers.iter() {
            q = q.bind(c.id);
        }
        for row in q.fetch_all(&self.pool).await? {
            let cid: i64 = row.try_get("customer_id")?;
            if let Some(c) = customers.iter_mut().find(|c| c.id == cid) {
                c.identities.push(Identity {
                    kind: get_enum(&row, "kind")?,
                    value: row.try_get("value")?,
                });
            }
        }
        Ok(())
    }

    /// The customer owning an identity (already normalized), with their identities: one query
    /// fewer than looking the id up first.
    pub async fn customer_owning(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<Customer>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CUSTOMER_COLS} FROM customers WHERE id = \
             (SELECT customer_id FROM customer_identities WHERE kind = $1 AND value = $2)"
        )))
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut customer = [customer_from_row(&row)?];
        self.add_identities(&mut customer).await?;
        let [customer] = customer;
        Ok(Some(customer))
    }

    /// The customer owning an identity (already normalized).
    pub async fn customer_by_identity(
        &self,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "SELECT customer_id FROM customer_identities WHERE kind = $1 AND value = $2",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("customer_id")).transpose()?)
    }

    /// Searches names (substring, case-insensitive), phone and fax numbers written in any format,
    /// emails and external references. Exact identity matches come first.
    pub async fn search_customers(&self, s: &CustomerSearch) -> StoreResult<Vec<Customer>> {
        let q = s.q.trim();
        let limit = s.limit.clamp(1, 200);
        let mut ids: Vec<i64> = Vec::new();
        if q.is_empty() {
            let rows = sqlx::query("SELECT id FROM customers ORDER BY updated_at DESC LIMIT $1")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
            for r in rows {
                ids.push(r.try_get("id")?);
            }
            return self.customers_by_ids(&ids).await;
        }
        let push = |ids: &mut Vec<i64>, rows: Vec<AnyRow>| -> StoreResult<()> {
            for r in rows {
                let id: i64 = r.try_get(0)?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Ok(())
        };
        let digits: String = q.chars().filter(|c| c.is_ascii_digit()).collect();
        let looks_numeric = digits.len() >= 4
            && q.chars()
                .all(|c| c.is_ascii_digit() || " +-().".contains(c) || c == '\u{3000}');
        if looks_numeric {
            if let Ok(e164) = normalize_phone(q, &s.default_region) {
                let rows = sqlx::query(
                    "SELECT customer_id FROM customer_identities WHERE kind IN ('phone', 'fax') AND value = $1",
                )
                .bind(&e164)
                .fetch_all(&self.pool)
                .await?;
                push(&mut ids, rows)?;
            }
            // A partial number: any stored number containing these digits (a scan, so only
            // when the number as typed matched nobody).
            if ids.is_empty() {
                let rows = sqlx::query(
                    "SELECT customer_id FROM customer_identities WHERE kind IN ('phone', 'fax') \
                     AND value LIKE $1 ESCAPE '\\' LIMIT $2",
                )
                .bind(format!("%{}%", like_escape(digits.trim_start_matches('0'))))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                push(&mut ids, rows)?;
            }
        }
        if q.contains('@') {
            if let Ok(email) = normalize_email(q) {
                let rows = sqlx::query(
                    "SELECT customer_id FROM customer_identities WHERE kind = 'email' AND value = $1",
                )
                .bind(&email)
                .fetch_all(&self.pool)
                .await?;
                push(&mut ids, rows)?;
            }
            if (ids.len() as i64) < limit {
                let rows = sqlx::query(
                    "SELECT customer_id FROM customer_identities WHERE kind = 'email' \
                     AND value LIKE $1 ESCAPE '\\' LIMIT $2",
                )
                .bind(format!("{}%", like_escape(&q.to_lowercase())))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                push(&mut ids, rows)?;
            }
        }
        let rows = sqlx::query("SELECT id FROM customers WHERE external_ref = $1")
            .bind(q)
            .fetch_all(&self.pool)
            .await?;
        push(&mut ids, rows)?;
        if (ids.len() as i64) < limit && !looks_numeric {
            let rows = sqlx::query(
                "SELECT id FROM customers WHERE name_search LIKE $1 ESCAPE '\\' ORDER BY name LIMIT $2",
            )
            .bind(format!("%{}%", like_escape(&search_key(q))))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            push(&mut ids, rows)?;
        }
        ids.truncate(limit as usize);
        self.customers_by_ids(&ids).await
    }

    /// Adds or updates (by category and reference) an archive record of a customer.
    pub async fn upsert_record(
        &self,
        customer_id: i64,
        r: &ArchiveRecordInput,
        now: i64,
    ) -> StoreResult<ArchiveRecord> {
        let row = sqlx::query(
            "INSERT INTO archive_records (customer_id, category, reference, description, amount_minor, \
             currency, status, occurred_on, expires_on, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (customer_id, category, reference) DO UPDATE SET description = excluded.description, \
             amount_minor = excluded.amount_minor, currency = excluded.currency, status = excluded.status, \
             occurred_on = excluded.occurred_on, expires_on = excluded.expires_on, updated_at = excluded.updated_at \
             RETURNING id, category, reference, description, amount_minor, currency, status, occurred_on, expires_on",
        )
        .bind(customer_id)
        .bind(r.category.as_str())
        .bind(r.reference.trim())
        .bind(&r.description)
        .bind(r.amount_minor)
        .bind(r.currency.as_deref().map(str::to_uppercase))
        .bind(&r.status)
        .bind(r.occurred_on.as_deref())
        .bind(r.expires_on.as_deref())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.message().to_lowercase().contains("foreign key") => {
                StoreError::NotFound
            }
            _ => e.into(),
        })?;
        record_from_row(&row)
    }

    pub async fn records(&self, customer_id: i64) -> StoreResult<Vec<ArchiveRecord>> {
        sqlx::query(
            "SELECT id, category, reference, description, amount_minor, currency, status, occurred_on, expires_on \
             FROM archive_records WHERE customer_id = $1 ORDER BY occurred_on DESC, id DESC LIMIT 500",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record_from_row)
        .collect()
    }

    pub async fn create_case(
        &self,
        customer_id: Option<i64>,
        subject: &str,
        now: i64,
    ) -> StoreResult<Case> {
        let row = sqlx::query(
            "INSERT INTO cases (customer_id, subject, status, created_at, updated_at) \
             VALUES ($1, $2, 'open', $3, $3) RETURNING id, customer_id, subject, status, created_at",
        )
        .bind(customer_id)
        .bind(subject)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        case_from_row(&row)
    }

    pub async fn open_cases(&self, customer_id: i64) -> StoreResult<Vec<Case>> {
        sqlx::query(
            "SELECT id, customer_id, subject, status, created_at FROM cases \
             WHERE customer_id = $1 AND status <> 'closed' ORDER BY created_at DESC LIMIT 50",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(case_from_row)
        .collect()
    }

    /// The screen-pop: customer card, balance, archive, the last 20 contacts on every channel,
    /// open cases and alerts, in one call.
    pub async fn screen_pop(
        &self,
        customer_id: i64,
        today: NaiveDate,
        cfg: &ArchiveConfig,
    ) -> StoreResult<ScreenPop> {
        let customer = self.get_customer(customer_id).await?;
        let records = Records::from_list(self.records(customer_id).await?);
        let recent_contacts = self.recent_contacts(customer_id, 20).await?;
        let open_cases = self.open_cases(customer_id).await?;
        let alerts = archive::alerts(&records, today, cfg);
        Ok(ScreenPop {
            balance: archive::balance(&records.payments),
            customer,
            records,
            recent_contacts,
            open_cases,
            alerts,
        })
    }
}

/// Replaces the identities of `kinds` for a customer; an identity owned by another customer is a
/// conflict (identities are never silently moved between customers).
pub(super) async fn set_identities(
    tx: &mut super::WriteTx,
    backend: Backend,
    customer_id: i64,
    identities: &[(IdentityKind, String)],
    kinds: &[IdentityKind],
) -> StoreResult<()> {
    for (kind, value) in identities {
        let owner = sqlx::query(
            "SELECT customer_id FROM customer_identities WHERE kind = $1 AND value = $2",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(owner) = owner {
            let owner: i64 = owner.try_get("customer_id")?;
            if owner != customer_id {
                return Err(StoreError::Conflict(format!(
                    "{kind} {value} already belongs to customer {owner}"
                )));
            }
        }
    }
    for kind in kinds {
        sqlx::query("DELETE FROM customer_identities WHERE customer_id = $1 AND kind || '' = $2")
            .bind(customer_id)
            .bind(kind.as_str())
            .execute(&mut **tx)
            .await?;
    }
    // The id orders a customer's identities: PostgreSQL's serial does that; on SQLite
    // (migration 0009) it is the next position within the customer.
    let insert = match backend {
        Backend::Postgres => {
            "INSERT INTO customer_identities (customer_id, kind, value) VALUES ($1, $2, $3) \
             ON CONFLICT (value, kind) DO NOTHING"
        }
        Backend::Sqlite => {
            "INSERT INTO customer_identities (customer_id, kind, value, id) VALUES ($1, $2, $3, \
             (SELECT COALESCE(MAX(id), 0) + 1 FROM customer_identities WHERE customer_id = $1)) \
             ON CONFLICT (value, kind) DO NOTHING"
        }
    };
    for (kind, value) in identities {
        sqlx::query(insert)
            .bind(customer_id)
            .bind(kind.as_str())
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
