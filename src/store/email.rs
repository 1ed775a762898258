//! Emails: inbound and outbound messages with their headers and raw bytes, their files, the
//! threading lookups, and the outbox.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::chat::{insert_contact, insert_conversation, Routed};
use super::contacts::{contact_from_row, CONTACT_COLS};
use super::customers::{customer_from_row, CUSTOMER_COLS};
use super::{is_unique_violation, Store, StoreError, StoreResult};
use crate::acd::types::{OverflowStep, SkillSet};
use crate::domain::{Channel, Contact};

/// The conversations an incoming email may belong to (see [`Store::email_thread_facts`]).
#[derive(Debug, Default)]
pub struct ThreadFacts {
    pub by_message_id: std::collections::HashMap<String, i64>,
    pub ticket: Option<i64>,
    pub recent: Option<i64>,
    /// The agent who last handled the customer (for routing a new contact back to them).
    pub last_agent: Option<i64>,
}

/// A file of an email, to store with it.
#[derive(Debug, Clone)]
pub struct EmailFile {
    pub file_name: String,
    pub content_type: String,
    pub data: Vec<u8>,
    pub sha256: String,
    pub content_id: Option<String>,
    pub inline: bool,
}

/// Where a new email's contact goes when its conversation has no open contact.
#[derive(Debug, Clone)]
pub struct EmailRouting {
    pub queue: String,
    pub priority: i64,
    pub skills: SkillSet,
    pub routed_by: String,
    pub overflow: Option<Vec<OverflowStep>>,
}

/// An email to store in a conversation (an existing one, or a new one when `conversation` is
/// `None`), with its message row, headers, files and raw bytes.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub conversation: Option<i64>,
    pub customer_id: Option<i64>,
    pub language: String,
    pub subject: Option<String>,
    pub thread_key: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `customer`, `agent` or `system` (acknowledgements).
    pub sender: &'static str,
    pub agent_id: Option<i64>,
    pub name: Option<String>,
    pub body: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub html: Option<String>,
    pub flags: serde_json::Value,
    pub raw: Vec<u8>,
    pub files: Vec<EmailFile>,
    /// For inbound mail: route a new contact when the conversation has none open.
    pub routing: Option<EmailRouting>,
    /// For outgoing mail: queue it for sending in the same transaction (the raw bytes and
    /// Message-ID are the stored ones).
    pub outbox: Option<OutboxEntry>,
}

/// How a stored outgoing email is to be sent.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub contact: Option<i64>,
    pub kind: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
}

/// What storing an email did.
#[derive(Debug, Clone)]
pub enum EmailStored {
    Stored {
        conversation: i64,
        seq: i64,
        email_id: i64,
        /// A new contact, to route.
        new_contact: Option<Box<Contact>>,
        /// The conversation's contact still open (queued, offered, in hand), if any.
        open_contact: Option<Box<Contact>>,
        /// The outbox row, when the email was queued for sending.
        outbox: Option<i64>,
    },
    /// That Message-ID is stored already (the same mail delivered twice).
    Duplicate { conversation: i64, seq: i64 },
}

/// An email as the console shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EmailView {
    pub id: i64,
    pub conversation_id: i64,
    pub seq: i64,
    pub direction: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: Option<String>,
    /// Sanitized HTML (remote images held back as `data-remote-src`).
    pub html: Option<String>,
    #[schema(value_type = Object)]
    pub flags: serde_json::Value,
    pub created_at: i64,
}

/// A mail waiting to be sent.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub conversation_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub seq: Option<i64>,
    pub kind: String,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OutboxStatus {
    pub id: i64,
    pub seq: Option<i64>,
    pub kind: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

fn email_from_row(r: &AnyRow) -> StoreResult<EmailView> {
    let json_list = |col: &str| -> StoreResult<Vec<String>> {
        Ok(serde_json::from_str(&r.try_get::<String, _>(col)?).unwrap_or_default())
    };
    Ok(EmailView {
        id: r.try_get("id")?,
        conversation_id: r.try_get("conversation_id")?,
        seq: r.try_get("seq")?,
        direction: r.try_get("direction")?,
        message_id: r.try_get("message_id")?,
        in_reply_to: r.try_get("in_reply_to")?,
        references: r
            .try_get::<String, _>("refs")?
            .split_whitespace()
            .map(String::from)
            .collect(),
        from_addr: r.try_get("from_addr")?,
        from_name: r.try_get("from_name")?,
        to: json_list("to_addrs")?,
        cc: json_list("cc_addrs")?,
        subject: r.try_get("subject")?,
        html: r.try_get("html")?,
        flags: serde_json::from_str(&r.try_get::<String, _>("flags")?)
            .unwrap_or(serde_json::Value::Null),
        created_at: r.try_get("created_at")?,
    })
}

const EMAIL_COLS: &str =
    "id, conversation_id, seq, direction, message_id, in_reply_to, refs, from_addr, \
     from_name, to_addrs, cc_addrs, subject, html, flags, created_at";

fn outbox_from_row(r: &AnyRow) -> StoreResult<OutboxItem> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        conversation_id: r.try_get("conversation_id")?,
        contact_id: r.try_get("contact_id")?,
        seq: r.try_get("seq")?,
        kind: r.try_get("kind")?,
        message_id: r.try_get("message_id")?,
        envelope_from: r.try_get("envelope_from")?,
        recipients: serde_json::from_str(&r.try_get::<String, _>("recipients")?)
            .unwrap_or_default(),
        raw: r.try_get("raw")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
    })
}

const OUTBOX_COLS: &str = "id, conversation_id, contact_id, seq, kind, message_id, envelope_from, \
     recipients, raw, status, attempts, next_attempt_at, last_error";

/// Contacts that are over.
const FINAL_STATES: &str = "('closed', 'abandoned', 'failed')";

/// A conversation's own row.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConversationRow {
    pub id: i64,
    pub channel: String,
    pub customer_id: Option<i64>,
    pub subject: Option<String>,
    /// `open` or `closed`.
    pub status: String,
    pub language: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    pub async fn conversation_row(&self, id: i64) -> StoreResult<Option<ConversationRow>> {
        let row = sqlx::query(
            "SELECT id, channel, customer_id, subject, status, language, created_at, updated_at FROM conversations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ConversationRow {
                id: r.try_get("id")?,
                channel: r.try_get("channel")?,
                customer_id: r.try_get("customer_id")?,
                subject: r.try_get("subject")?,
                status: r.try_get("status")?,
                language: r.try_get("language")?,
                created_at: crate::domain::rfc3339(r.try_get("created_at")?),
                updated_at: crate::domain::rfc3339(r.try_get("updated_at")?),
            })
        })
        .transpose()
    }

    /// An agent's internal note at the end of a (non-chat) conversation; returns its seq.
    pub async fn add_note(
        &self,
        conversation: i64,
        agent: i64,
        name: &str,
        text: &str,
        now: i64,
    ) -> StoreResult<i64> {
        for _ in 0..3 {
            let mut tx = self.begin_write().await?;
            let seq: i64 = sqlx::query(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM messages WHERE conversation_id = $1",
            )
            .bind(conversation)
            .fetch_one(&mut *tx)
            .await?
            .try_get("next")?;
            let done = sqlx::query(
                "INSERT INTO messages (conversation_id, seq, sender, agent_id, name, body, created_at) \
                 VALUES ($1, $2, 'note', $3, $4, $5, $6)",
            )
            .bind(conversation)
            .bind(seq)
            .bind(agent)
            .bind(name)
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match done {
                Ok(_) => {
                    tx.commit().await?;
                    return Ok(seq);
                }
                // Another message took that seq a moment ago: take the next one.
                Err(e) if is_unique_violation(&e) => tx.rollback().await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(
            "the conversation is busy; try again".into(),
        ))
    }

    /// The conversation and seq of a stored email, by its Message-ID.
    pub async fn email_by_message_id(&self, message_id: &str) -> StoreResult<Option<(i64, i64)>> {
        let row =
            sqlx::query("SELECT conversation_id, seq FROM email_messages WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok((r.try_get("conversation_id")?, r.try_get("seq")?)))
            .transpose()
    }

    /// What ingesting an email needs first, in one round trip: the conversation it is already
    /// stored in (the same mail delivered twice), and the customer owning the sender's address
    /// (without their identities, which ingest does not use).
    pub async fn email_ingest_lookup(
        &self,
        message_id: &str,
        sender: Option<&str>,
    ) -> StoreResult<(Option<i64>, Option<crate::domain::Customer>)> {
        let sql = format!(
            "SELECT (SELECT conversation_id FROM email_messages WHERE message_id = $1) AS dup_conv, \
             {CUSTOMER_COLS} FROM (SELECT 1 AS one) AS one LEFT JOIN customers ON customers.id = \
             (SELECT customer_id FROM customer_identities WHERE kind = $2 AND value = $3)"
        );
        let row = sqlx::query(AssertSqlSafe(self.dialect(sql)))
            .bind(message_id)
            .bind(crate::domain::IdentityKind::Email.as_str())
            .bind(sender.unwrap_or(""))
            .fetch_one(&self.pool)
            .await?;
        let dup: Option<i64> = row.try_get("dup_conv")?;
        let customer = match (sender, row.try_get::<Option<i64>, _>("id")?) {
            (Some(_), Some(_)) => Some(customer_from_row(&row)?),
            _ => None,
        };
        Ok((dup, customer))
    }

    /// What threading needs to know, in one round trip: the conversations of the Message-IDs an
    /// email refers to, of its ticket number, and the customer's latest conversation on the
    /// same subject since `since`.
    pub async fn email_thread_facts(
        &self,
        message_ids: &[String],
        ticket: Option<i64>,
        recent: Option<(i64, &str, i64)>,
        last_agent_of: Option<i64>,
    ) -> StoreResult<ThreadFacts> {
        let mut parts = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !message_ids.is_empty() {
            let list: Vec<String> = message_ids.iter().map(|_| next()).collect();
            parts.push(format!(
                "SELECT 'm' AS fact, message_id AS mid, conversation_id AS conv FROM email_messages \
                 WHERE message_id IN ({})",
                list.join(", ")
            ));
        }
        if ticket.is_some() {
            parts.push(format!(
                "SELECT 't' AS fact, '' AS mid, id AS conv FROM conversations WHERE id = {} AND channel = 'email'",
                next()
            ));
        }
        if recent.is_some() {
            let (c, k, t) = (next(), next(), next());
            parts.push(format!(
                "SELECT 'r' AS fact, '' AS mid, conv FROM (SELECT id AS conv FROM conversations \
                 WHERE customer_id = {c} AND thread_key = {k} AND channel = 'email' AND updated_at >= {t} \
                 ORDER BY updated_at DESC LIMIT 1) AS recent"
            ));
        }
        if last_agent_of.is_some() {
            // `Store::last_agent`, read here to save a round trip.
            parts.push(format!(
                "SELECT 'a' AS fact, '' AS mid, agent_id AS conv FROM ({}) AS last_agent",
                super::acd::last_agent_query(&next())
            ));
        }
        let mut facts = ThreadFacts::default();
        if parts.is_empty() {
            return Ok(facts);
        }
        let sql = self.dialect(parts.join(" UNION ALL "));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in message_ids {
            q = q.bind(id.as_str());
        }
        if let Some(t) = ticket {
            q = q.bind(t);
        }
        if let Some((customer, key, since)) = recent {
            q = q.bind(customer).bind(key).bind(since);
        }
        if let Some(customer) = last_agent_of {
            q = q.bind(customer);
        }
        for r in q.fetch_all(&self.pool).await? {
            let kind: String = r.try_get("fact")?;
            let conv: i64 = r.try_get("conv")?;
            match kind.as_str() {
                "m" => {
                    facts.by_message_id.insert(r.try_get("mid")?, conv);
                }
                "t" => facts.ticket = Some(conv),
                "a" => facts.last_agent = Some(conv),
                _ => facts.recent = Some(conv),
            }
        }
        Ok(facts)
    }

    /// Stores an email with everything that belongs to it in one transaction: the conversation
    /// (new or existing), the message, its headers and raw bytes, its files, and — for inbound
    /// mail whose conversation has no open contact — a new queued contact.
    pub async fn store_email(&self, e: &NewEmail, now: i64) -> StoreResult<EmailStored> {
        // No duplicate lookup first: callers check before parsing work, and a copy delivered at
        // the same moment is refused by the UNIQUE Message-ID.
        let mut tx = self.begin_write().await?;
        match insert_email(&mut tx, e, now).await? {
            Inserted::Stored(stored) => {
                tx.commit().await?;
                Ok(stored)
            }
            Inserted::Duplicate(err) => {
                tx.rollback().await?;
                match self.email_by_message_id(&e.message_id).await? {
                    Some((conversation, seq)) => Ok(EmailStored::Duplicate { conversation, seq }),
                    None => Err(StoreError::Db(err)),
                }
            }
        }
    }

    /// Stores several emails (each with its `now`) in one transaction (group commit: one
    /// BEGIN/COMMIT, one write turn and one WAL commit for all), and answers each in order.
    /// When the batch cannot commit as a whole — a duplicate, a bad row, a failed commit —
    /// nothing of it is kept and each email is stored again alone, so one email's failure
    /// neither loses nor falsely reports another.
    pub async fn store_emails(&self, batch: &[(&NewEmail, i64)]) -> Vec<StoreResult<EmailStored>> {
        if batch.len() > 1 {
            match self.try_store_emails(batch).await {
                Ok(Some(stored)) => return stored.into_iter().map(Ok).collect(),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, emails = batch.len(), "an email batch failed; storing each alone")
                }
            }
        }
        let mut out = Vec::with_capacity(batch.len());
        for (e, now) in batch {
            out.push(self.store_email(e, *now).await);
        }
        out
    }

    /// The whole batch in one transaction, or `None` when one of them is a duplicate.
    async fn try_store_emails(
        &self,
        batch: &[(&NewEmail, i64)],
    ) -> StoreResult<Option<Vec<EmailStored>>> {
        let mut tx = self.begin_write().await?;
        let mut stored = Vec::with_capacity(batch.len());
        for (e, now) in batch {
            match insert_email(&mut tx, e, *now).await? {
                Inserted::Stored(s) => stored.push(s),
                Inserted::Duplicate(_) => {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
        }
        tx.commit().await?;
        Ok(Some(stored))
    }

    /// Every email of a conversation, in order.
    pub async fn conversation_emails(&self, conversation: i64) -> StoreResult<Vec<EmailView>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {EMAIL_COLS} FROM email_messages WHERE conversation_id = $1 ORDER BY seq"
        )))
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(email_from_row)
        .collect()
    }

    pub async fn email(&self, conversation: i64, seq: i64) -> StoreResult<Option<EmailView>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {EMAIL_COLS} FROM email_messages WHERE conversation_id = $1 AND seq = $2"
        )))
        .bind(conversation)
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| email_from_row(&r))
        .transpose()
    }

    /// The raw bytes of a stored email (for audit, and to forward it).
    pub async fn email_raw(&self, conversation: i64, seq: i64) -> StoreResult<Vec<u8>> {
        let row =
            sqlx::query("SELECT raw FROM email_messages WHERE conversation_id = $1 AND seq = $2")
                .bind(conversation)
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("raw")?)
    }

    /// The files of a conversation's messages: (message seq, attachment).
    pub async fn message_files(
        &self,
        conversation: i64,
    ) -> StoreResult<Vec<(i64, super::AttachmentRow, Option<String>, bool)>> {
        let rows = sqlx::query(
            "SELECT id, conversation_id, file_name, content_type, size, sha256, message_seq, content_id, inline \
             FROM attachments WHERE conversation_id = $1 AND message_seq IS NOT NULL ORDER BY message_seq, id",
        )
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("message_seq")?,
                    super::AttachmentRow {
                        id: r.try_get("id")?,
                        conversation_id: r.try_get("conversation_id")?,
                        file_name: r.try_get("file_name")?,
                        content_type: r.try_get("content_type")?,
                        size: r.try_get("size")?,
                        sha256: r.try_get("sha256")?,
                    },
                    r.try_get("content_id")?,
                    r.try_get::<i64, _>("inline")? != 0,
                ))
            })
            .collect()
    }

    /// Pending mail whose next attempt is due.
    pub async fn due_outbox(&self, now: i64, limit: i64) -> StoreResult<Vec<OutboxItem>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLS} FROM email_outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(outbox_from_row)
        .collect()
    }

    /// When the next pending mail is due, if any.
    pub async fn next_outbox_due(&self) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS next FROM email_outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("next")?)
    }

    pub async fn outbox_item(&self, id: i64) -> StoreResult<OutboxItem> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLS} FROM email_outbox WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        outbox_from_row(&row)
    }

    /// Records an attempt: `sent`, `failed` (given up) or still `pending` until `next`.
    pub async fn mark_outbox(
        &self,
        id: i64,
        status: &str,
        attempts: i64,
        next_attempt_at: i64,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE email_outbox SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4, \
             sent_at = CASE WHEN $1 = 'sent' THEN $5 ELSE sent_at END WHERE id = $6",
        )
        .bind(status)
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    /// The sending state of a conversation's mail, for the console.
    pub async fn outbox_status(&self, conversation: i64) -> StoreResult<Vec<OutboxStatus>> {
        sqlx::query(
            "SELECT id, seq, kind, status, attempts, next_attempt_at, last_error FROM email_outbox \
             WHERE conversation_id = $1 ORDER BY id",
        )
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(OutboxStatus {
                id: r.try_get("id")?,
                seq: r.try_get("seq")?,
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_error: r.try_get("last_error")?,
            })
        })
        .collect()
    }

    /// Moves messages from `seq` on into a new conversation of their own (an agent split a
    /// thread), with the emails, files and outbox entries that belong to them.
    pub async fn split_conversation(
        &self,
        conversation: i64,
        from_seq: i64,
        now: i64,
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT channel, customer_id, language, thread_key FROM conversations WHERE id = $1",
        )
        .bind(conversation)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let subject: Option<String> = sqlx::query(
            "SELECT subject FROM email_messages WHERE conversation_id = $1 AND seq = $2",
        )
        .bind(conversation)
        .bind(from_seq)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("subject"))
        .transpose()?
        .flatten();
        let channel: String = row.try_get("channel")?;
        let customer: Option<i64> = row.try_get("customer_id")?;
        let language: Option<String> = row.try_get("language")?;
        let new: i64 = sqlx::query(
            "INSERT INTO conversations (channel, customer_id, subject, language, status, created_at, updated_at, thread_key) \
             VALUES ($1, $2, $3, $4, 'open', $5, $5, NULL) RETURNING id",
        )
        .bind(channel)
        .bind(customer)
        .bind(subject)
        .bind(language)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        for table in ["messages", "email_messages"] {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET conversation_id = $1 WHERE conversation_id = $2 AND seq >= $3"
            )))
            .bind(new)
            .bind(conversation)
            .bind(from_seq)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE attachments SET conversation_id = $1 WHERE conversation_id = $2 AND message_seq >= $3",
        )
        .bind(new)
        .bind(conversation)
        .bind(from_seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE email_outbox SET conversation_id = $1 WHERE conversation_id = $2 AND seq >= $3",
        )
        .bind(new)
        .bind(conversation)
        .bind(from_seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Appends every message of `from` to `into` (renumbered after `into`'s last), and closes
    /// `from`; its contacts now belong to `into`.
    pub async fn merge_conversations(&self, from: i64, into: i64, now: i64) -> StoreResult<()> {
        if from == into {
            return Err(StoreError::Invalid(
                "a conversation cannot be merged into itself".into(),
            ));
        }
        let mut tx = self.begin_write().await?;
        let base: i64 = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS last FROM messages WHERE conversation_id = $1",
        )
        .bind(into)
        .fetch_one(&mut *tx)
        .await?
        .try_get("last")?;
        let seqs: Vec<i64> =
            sqlx::query("SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq")
                .bind(from)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get("seq"))
                .collect::<Result<_, _>>()?;
        // Negative seqs first, so no (conversation, seq) pair collides while renumbering.
        for table in ["messages", "email_messages"] {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET seq = -seq WHERE conversation_id = $1"
            )))
            .bind(from)
            .execute(&mut *tx)
            .await?;
        }
        for (i, old) in seqs.iter().enumerate() {
            let new = base + i as i64 + 1;
            for table in ["messages", "email_messages"] {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {table} SET conversation_id = $1, seq = $2 WHERE conversation_id = $3 AND seq = $4"
                )))
                .bind(into)
                .bind(new)
                .bind(from)
                .bind(-old)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE attachments SET conversation_id = $1, message_seq = $2 WHERE conversation_id = $3 AND message_seq = $4",
            )
            .bind(into)
            .bind(new)
            .bind(from)
            .bind(old)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE email_outbox SET conversation_id = $1, seq = $2 WHERE conversation_id = $3 AND seq = $4")
                .bind(into)
                .bind(new)
                .bind(from)
                .bind(old)
                .execute(&mut *tx)
                .await?;
        }
        // Files not tied to a message (chat uploads) move along.
        sqlx::query("UPDATE attachments SET conversation_id = $1 WHERE conversation_id = $2")
            .bind(into)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE contacts SET conversation_id = $1 WHERE conversation_id = $2")
            .bind(into)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE conversations SET status = 'closed', closed_at = $1, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(into)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What [`insert_email`] did.
enum Inserted {
    Stored(EmailStored),
    /// The Message-ID is stored already; the transaction must be rolled back.
    Duplicate(sqlx::Error),
}

/// The statements of [`Store::store_email`], inside the caller's write transaction.
async fn insert_email(tx: &mut super::WriteTx, e: &NewEmail, now: i64) -> StoreResult<Inserted> {
    let conversation = match e.conversation {
        Some(c) => c,
        None => {
            insert_conversation(
                tx,
                Channel::Email,
                e.customer_id,
                e.subject.as_deref(),
                &e.language,
                e.thread_key.as_deref(),
                now,
            )
            .await?
        }
    };
    let meta = serde_json::json!({ "subject": e.subject, "email": true });
    // The next seq is taken inside the insert: the write transaction holds the lock.
    let seq: i64 = sqlx::query(
        "INSERT INTO messages (conversation_id, seq, sender, agent_id, name, body, event, meta, \
         created_at) VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages \
         WHERE conversation_id = $1), $2, $3, $4, $5, 'email', $6, $7) RETURNING seq",
    )
    .bind(conversation)
    .bind(e.sender)
    .bind(e.agent_id)
    .bind(e.name.as_deref())
    .bind(e.body.as_str())
    .bind(meta.to_string())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("seq")?;
    let inserted = sqlx::query(
        "INSERT INTO email_messages (conversation_id, seq, direction, message_id, in_reply_to, \
         refs, from_addr, from_name, to_addrs, cc_addrs, subject, html, flags, raw, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
    )
    .bind(conversation)
    .bind(seq)
    .bind(e.direction)
    .bind(e.message_id.as_str())
    .bind(e.in_reply_to.as_deref())
    .bind(e.references.join(" "))
    .bind(e.from_addr.as_deref())
    .bind(e.from_name.as_deref())
    .bind(serde_json::to_string(&e.to).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(&e.cc).unwrap_or_else(|_| "[]".into()))
    .bind(e.subject.as_deref())
    .bind(e.html.as_deref())
    .bind(e.flags.to_string())
    .bind(e.raw.clone())
    .bind(now)
    .fetch_one(&mut **tx)
    .await;
    let email_id: i64 = match inserted {
        Ok(r) => r.try_get("id")?,
        // Delivered twice at the same moment: the other copy won.
        Err(err) if is_unique_violation(&err) => return Ok(Inserted::Duplicate(err)),
        Err(err) => return Err(err.into()),
    };
    for f in &e.files {
        sqlx::query(
            "INSERT INTO attachments (conversation_id, file_name, content_type, size, sha256, \
             data, created_at, message_seq, content_id, inline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(conversation)
        .bind(f.file_name.as_str())
        .bind(f.content_type.as_str())
        .bind(f.data.len() as i64)
        .bind(f.sha256.as_str())
        .bind(f.data.clone())
        .bind(now)
        .bind(seq)
        .bind(f.content_id.as_deref())
        .bind(f.inline as i64)
        .execute(&mut **tx)
        .await?;
    }
    // A new conversation is open and has no contact yet.
    let open_contact = match e.conversation {
        None => None,
        Some(_) => {
            sqlx::query(
                "UPDATE conversations SET updated_at = $1, status = 'open', closed_at = NULL \
                 WHERE id = $2",
            )
            .bind(now)
            .bind(conversation)
            .execute(&mut **tx)
            .await?;
            sqlx::query(AssertSqlSafe(format!(
                "SELECT {CONTACT_COLS} FROM contacts WHERE conversation_id = $1 \
                 AND state NOT IN {FINAL_STATES} ORDER BY id DESC LIMIT 1"
            )))
            .bind(conversation)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| contact_from_row(&r))
            .transpose()?
        }
    };
    let mut new_contact = None;
    if let (None, Some(r)) = (&open_contact, &e.routing) {
        new_contact = Some(Box::new(
            insert_contact(
                tx,
                Routed {
                    channel: Channel::Email,
                    customer_id: e.customer_id,
                    subject: e.subject.as_deref(),
                    queue: &r.queue,
                    priority: r.priority,
                    skills: &r.skills,
                    routed_by: &r.routed_by,
                    overflow: r.overflow.as_deref(),
                    conversation,
                    event: serde_json::json!({
                        "conversation_id": conversation, "rule": r.routed_by, "email_seq": seq
                    }),
                },
                now,
            )
            .await?,
        ));
    }
    let outbox = match &e.outbox {
        None => None,
        Some(o) => {
            let row = sqlx::query(
                "INSERT INTO email_outbox (conversation_id, contact_id, seq, kind, message_id, \
                 envelope_from, recipients, raw, status, attempts, next_attempt_at, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) \
                 RETURNING id",
            )
            .bind(conversation)
            .bind(o.contact)
            .bind(seq)
            .bind(o.kind.as_str())
            .bind(e.message_id.as_str())
            .bind(o.envelope_from.as_str())
            .bind(serde_json::to_string(&o.recipients).unwrap_or_else(|_| "[]".into()))
            .bind(e.raw.clone())
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
            Some(row.try_get::<i64, _>("id")?)
        }
    };
    let open_contact = open_contact.map(Box::new);
    Ok(Inserted::Stored(EmailStored::Stored {
        conversation,
        seq,
        email_id,
        new_contact,
        open_contact,
        outbox,
    }))
}
