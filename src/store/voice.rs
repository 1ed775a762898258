//! Voice: agents' desk-phone accounts, call recordings, and contact events in batches (a call
//! leaves many: IVR steps, queue announcements, holds).

use sqlx::{AssertSqlSafe, Row};

use super::{is_unique_violation, value_groups, Store, StoreError, StoreResult};

/// An agent's desk-phone account (the digest HA1 stays in the store).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SipAccount {
    pub user_id: i64,
    pub username: String,
    pub realm: String,
    #[serde(skip)]
    pub ha1: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Recording {
    pub id: i64,
    pub contact_id: Option<i64>,
    /// `call` or `voicemail`.
    pub kind: String,
    #[serde(skip)]
    pub path: String,
    pub started_at: i64,
    /// `None` while recording.
    pub duration_ms: Option<i64>,
    pub bytes: Option<i64>,
}

/// A contact event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactEventRow {
    pub contact_id: i64,
    pub at: i64,
    pub kind: String,
    pub data: serde_json::Value,
}

impl Store {
    pub async fn sip_accounts(&self) -> StoreResult<Vec<SipAccount>> {
        sqlx::query("SELECT user_id, username, realm, ha1 FROM sip_accounts ORDER BY username")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SipAccount {
                    user_id: r.try_get("user_id")?,
                    username: r.try_get("username")?,
                    realm: r.try_get("realm")?,
                    ha1: r.try_get("ha1")?,
                })
            })
            .collect()
    }

    /// Sets (or replaces) a user's desk-phone account.
    pub async fn set_sip_account(&self, a: &SipAccount, now: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "INSERT INTO sip_accounts (user_id, username, realm, ha1, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, realm = excluded.realm, \
             ha1 = excluded.ha1, updated_at = excluded.updated_at",
        )
        .bind(a.user_id)
        .bind(a.username.as_str())
        .bind(a.realm.as_str())
        .bind(a.ha1.as_str())
        .bind(now)
        .execute(&self.write_pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "the SIP username {:?} belongs to another user",
                a.username
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_sip_account(&self, user_id: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM sip_accounts WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.write_pool)
            .await?;
        Ok(())
    }

    pub async fn start_recording(
        &self,
        contact: Option<i64>,
        kind: &str,
        path: &str,
        now: i64,
    ) -> StoreResult<i64> {
        Ok(sqlx::query(
            "INSERT INTO recordings (contact_id, kind, path, started_at, created_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(contact)
        .bind(kind)
        .bind(path)
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?)
    }

    pub async fn finish_recording(&self, id: i64, duration_ms: i64, bytes: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE recordings SET duration_ms = $1, bytes = $2 WHERE id = $3")
            .bind(duration_ms)
            .bind(bytes)
            .bind(id)
            .execute(&self.write_pool)
            .await?;
        Ok(())
    }

    /// Ties a recording (a voicemail) to the contact made of it.
    pub async fn set_recording_contact(&self, id: i64, contact: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE recordings SET contact_id = $1 WHERE id = $2")
            .bind(contact)
            .bind(id)
            .execute(&self.write_pool)
            .await?;
        Ok(())
    }

    /// The customer a call turned out to be from (the IVR identified them).
    pub async fn set_contact_customer(&self, contact: i64, customer: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query("UPDATE contacts SET customer_id = $1 WHERE id = $2")
            .bind(customer)
            .bind(contact)
            .execute(&self.write_pool)
            .await?;
        Ok(())
    }

    /// Recordings whose end was never written (the hub stopped during them).
    pub async fn unfinished_recordings(&self) -> StoreResult<Vec<Recording>> {
        self.recordings_where("duration_ms IS NULL", None).await
    }

    pub async fn contact_recordings(&self, contact: i64) -> StoreResult<Vec<Recording>> {
        self.recordings_where("contact_id = $1", Some(contact))
            .await
    }

    pub async fn recording(&self, id: i64) -> StoreResult<Recording> {
        self.recordings_where("id = $1", Some(id))
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    async fn recordings_where(
        &self,
        clause: &str,
        bind: Option<i64>,
    ) -> StoreResult<Vec<Recording>> {
        let q = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, contact_id, kind, path, started_at, duration_ms, bytes FROM recordings WHERE {clause} ORDER BY id"
        )));
        let q = match bind {
            Some(b) => q.bind(b),
            None => q,
        };
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Recording {
                    id: r.try_get("id")?,
                    contact_id: r.try_get("contact_id")?,
                    kind: r.try_get("kind")?,
                    path: r.try_get("path")?,
                    started_at: r.try_get("started_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    bytes: r.try_get("bytes")?,
                })
            })
            .collect()
    }

    /// Appends contact events in one transaction (the voice channel's writer batches them).
    pub async fn append_contact_events(&self, rows: &[ContactEventRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(200) {
            let sql = format!(
                "INSERT INTO contact_events (contact_id, at, kind, data) VALUES {}",
                value_groups(chunk.len(), 4)
            );
            let mut q = sqlx::query(AssertSqlSafe(self.dialect(sql)));
            for r in chunk {
                q = q
                    .bind(r.contact_id)
                    .bind(r.at)
                    .bind(r.kind.as_str())
                    .bind(r.data.to_string());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
