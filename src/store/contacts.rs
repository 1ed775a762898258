//! Contacts and the append-only event logs (`contact_events`, `agent_events`).

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{get_enum, get_opt_enum, Store, StoreError, StoreResult};
use crate::domain::{rfc3339, Channel, Contact, ContactEvent, ContactState, Direction};

#[derive(Debug, Clone)]
pub struct NewContact {
    pub channel: Channel,
    pub direction: Direction,
    pub customer_id: Option<i64>,
    pub case_id: Option<i64>,
    pub queue: Option<String>,
    pub state: ContactState,
    pub priority: i64,
    pub subject: Option<String>,
    pub agent_id: Option<i64>,
    /// The chat or email thread the contact belongs to.
    pub conversation_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub channel: Option<Channel>,
    pub state: Option<ContactState>,
    pub customer_id: Option<i64>,
    pub limit: i64,
    /// Only contacts with an id below this (paging newest first).
    pub before_id: Option<i64>,
}

pub(crate) const CONTACT_COLS: &str =
    "id, channel, direction, customer_id, case_id, queue, state, priority, \
     subject, agent_id, created_at, connected_at, ended_at, conversation_id";

pub(crate) fn contact_from_row(row: &AnyRow) -> StoreResult<Contact> {
    Ok(Contact {
        id: row.try_get("id")?,
        channel: get_enum(row, "channel")?,
        direction: get_enum(row, "direction")?,
        customer_id: row.try_get("customer_id")?,
        case_id: row.try_get("case_id")?,
        queue: row.try_get("queue")?,
        state: get_enum(row, "state")?,
        priority: row.try_get("priority")?,
        subject: row.try_get("subject")?,
        agent_id: row.try_get("agent_id")?,
        created_at: rfc3339(row.try_get("created_at")?),
        connected_at: row.try_get::<Option<i64>, _>("connected_at")?.map(rfc3339),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(rfc3339),
        conversation_id: row.try_get("conversation_id")?,
    })
}

fn is_final(state: ContactState) -> bool {
    matches!(
        state,
        ContactState::Closed | ContactState::Abandoned | ContactState::Failed
    )
}

/// One agent change for the log, written by the hub's writer task.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEventRow {
    pub agent_id: i64,
    pub at: i64,
    pub kind: String,
    pub state: Option<String>,
    pub reason: Option<String>,
    pub data: serde_json::Value,
}

impl Store {
    /// Stores a contact and its first event in one transaction.
    pub async fn create_contact(&self, c: &NewContact, now: i64) -> StoreResult<Contact> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO contacts (channel, direction, customer_id, case_id, queue, state, priority, subject, \
             agent_id, created_at, connected_at, ended_at, updated_at, conversation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $10, $13) RETURNING {CONTACT_COLS}"
        )))
        .bind(c.channel.as_str())
        .bind(c.direction.as_str())
        .bind(c.customer_id)
        .bind(c.case_id)
        .bind(c.queue.as_deref())
        .bind(c.state.as_str())
        .bind(c.priority)
        .bind(c.subject.as_deref())
        .bind(c.agent_id)
        .bind(now)
        .bind((c.state == ContactState::Connected).then_some(now))
        .bind(is_final(c.state).then_some(now))
        .bind(c.conversation_id)
        .fetch_one(&mut *tx)
        .await?;
        let contact = contact_from_row(&row)?;
        sqlx::query(
            "INSERT INTO contact_events (contact_id, at, kind, state, agent_id, queue, data) \
             VALUES ($1, $2, 'created', $3, $4, $5, '{}')",
        )
        .bind(contact.id)
        .bind(now)
        .bind(c.state.as_str())
        .bind(c.agent_id)
        .bind(c.queue.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(contact)
    }

    /// Moves a contact to `state` and appends the event, in one transaction.
    pub async fn set_contact_state(
        &self,
        id: i64,
        state: ContactState,
        agent_id: Option<i64>,
        now: i64,
        data: &serde_json::Value,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE contacts SET state = $1, agent_id = COALESCE($2, agent_id), updated_at = $3, \
             connected_at = CASE WHEN $1 = 'connected' AND connected_at IS NULL THEN $3 ELSE connected_at END, \
             ended_at = CASE WHEN $4 = 1 THEN $3 ELSE ended_at END WHERE id = $5",
        )
        .bind(state.as_str())
        .bind(agent_id)
        .bind(now)
        .bind(is_final(state) as i64)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO contact_events (contact_id, at, kind, state, agent_id, data) \
             VALUES ($1, $2, 'state', $3, $4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(state.as_str())
        .bind(agent_id)
        .bind(data.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends an event that does not change the contact's state (e.g. an overflow step).
    pub async fn append_contact_event(
        &self,
        id: i64,
        at: i64,
        kind: &str,
        data: &serde_json::Value,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO contact_events (contact_id, at, kind, data) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(at)
        .bind(kind)
        .bind(data.to_string())
        .execute(&self.write_pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.message().to_lowercase().contains("foreign key") => {
                StoreError::NotFound
            }
            _ => e.into(),
        })?;
        Ok(())
    }

    pub async fn get_contact(&self, id: i64) -> StoreResult<Contact> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        contact_from_row(&row)
    }

    pub async fn list_contacts(&self, f: &ContactFilter) -> StoreResult<Vec<Contact>> {
        let mut sql = format!("SELECT {CONTACT_COLS} FROM contacts WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.channel.is_some() {
            sql += &format!(" AND channel = {}", next());
        }
        if f.state.is_some() {
            sql += &format!(" AND state = {}", next());
        }
        if f.customer_id.is_some() {
            sql += &format!(" AND customer_id = {}", next());
        }
        if f.before_id.is_some() {
            sql += &format!(" AND id < {}", next());
        }
        sql += &format!(" ORDER BY id DESC LIMIT {}", next());
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(c) = f.channel {
            q = q.bind(c.as_str());
        }
        if let Some(s) = f.state {
            q = q.bind(s.as_str());
        }
        if let Some(c) = f.customer_id {
            q = q.bind(c);
        }
        if let Some(b) = f.before_id {
            q = q.bind(b);
        }
        q.bind(f.limit.clamp(1, 500))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(contact_from_row)
            .collect()
    }

    /// A customer's latest contacts on every channel, newest first.
    pub async fn recent_contacts(&self, customer_id: i64, limit: i64) -> StoreResult<Vec<Contact>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2"
        )))
        .bind(customer_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(contact_from_row)
        .collect()
    }

    pub async fn contact_events(&self, contact_id: i64) -> StoreResult<Vec<ContactEvent>> {
        let rows = sqlx::query(
            "SELECT id, contact_id, at, kind, state, agent_id, queue, data FROM contact_events \
             WHERE contact_id = $1 ORDER BY id",
        )
        .bind(contact_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(ContactEvent {
                    id: r.try_get("id")?,
                    contact_id: r.try_get("contact_id")?,
                    at: rfc3339(r.try_get("at")?),
                    kind: r.try_get("kind")?,
                    state: get_opt_enum(r, "state")?,
                    agent_id: r.try_get("agent_id")?,
                    queue: r.try_get("queue")?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// Contacts waiting per queue (`queued`), for the queue list.
    pub async fn waiting_by_queue(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT queue, COUNT(*) AS n FROM contacts WHERE state = 'queued' AND queue IS NOT NULL GROUP BY queue",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("queue")?, r.try_get("n")?)))
            .collect()
    }

    /// Appends agent events in one transaction (the writer task batches them).
    pub async fn append_agent_events(&self, events: &[AgentEventRow]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO agent_events (agent_id, at, kind, state, reason, data) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.agent_id)
            .bind(e.at)
            .bind(&e.kind)
            .bind(e.state.as_deref())
            .bind(e.reason.as_deref())
            .bind(e.data.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn agent_events(&self, agent_id: i64, limit: i64) -> StoreResult<Vec<AgentEventRow>> {
        let rows = sqlx::query(
            "SELECT agent_id, at, kind, state, reason, data FROM agent_events WHERE agent_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(agent_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(AgentEventRow {
                    agent_id: r.try_get("agent_id")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    state: r.try_get("state")?,
                    reason: r.try_get("reason")?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}
