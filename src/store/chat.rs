//! Conversations, their messages and files, chat sessions and canned responses.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::contacts::{contact_from_row, CONTACT_COLS};
use super::{value_groups, Store, StoreError, StoreResult};
use crate::acd::types::{OverflowStep, SkillSet};
use crate::domain::{Channel, Contact};
use crate::store::format_skills;

/// A message as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub conversation_id: i64,
    pub seq: i64,
    /// `customer`, `agent`, `system` or `note`.
    pub sender: String,
    pub agent_id: Option<i64>,
    pub name: Option<String>,
    pub body: String,
    pub client_id: Option<String>,
    pub event: Option<String>,
    pub attachment_id: Option<i64>,
    pub meta: serde_json::Value,
    pub created_at: i64,
}

/// A stored file's description (the bytes are fetched apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub id: i64,
    pub conversation_id: i64,
    pub file_name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

/// What a visitor gave in the pre-chat form.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Visitor {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub topic: Option<String>,
    pub page: Option<String>,
}

/// A new chat: the conversation, its session, its first contact (queued, routed) and maybe
/// its first message, stored together.
#[derive(Debug, Clone)]
pub struct NewChat {
    pub customer_id: Option<i64>,
    pub language: String,
    pub subject: Option<String>,
    pub visitor: Visitor,
    pub token_hash: String,
    pub queue: String,
    pub priority: i64,
    pub skills: SkillSet,
    pub routed_by: String,
    pub overflow: Option<Vec<OverflowStep>>,
    /// (client_id, text) of the first message.
    pub first_message: Option<(String, String)>,
}

/// A chat as the store knows it.
#[derive(Debug, Clone)]
pub struct ChatRow {
    pub conversation_id: i64,
    pub customer_id: Option<i64>,
    pub language: String,
    pub subject: Option<String>,
    pub open: bool,
    pub visitor: Visitor,
    /// The conversation's latest contact.
    pub contact: Option<Contact>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CannedResponse {
    pub id: i64,
    pub title: String,
    pub body: String,
    /// `zh-CN`, `zh-TW`, `en`, or absent for any language.
    pub language: Option<String>,
}

const MESSAGE_COLS: &str = "conversation_id, seq, sender, agent_id, name, body, client_id, event, \
     attachment_id, meta, created_at";

fn message_from_row(r: &AnyRow) -> StoreResult<MessageRow> {
    Ok(MessageRow {
        conversation_id: r.try_get("conversation_id")?,
        seq: r.try_get("seq")?,
        sender: r.try_get("sender")?,
        agent_id: r.try_get("agent_id")?,
        name: r.try_get("name")?,
        body: r.try_get("body")?,
        client_id: r.try_get("client_id")?,
        event: r.try_get("event")?,
        attachment_id: r.try_get("attachment_id")?,
        meta: serde_json::from_str(&r.try_get::<String, _>("meta")?)
            .unwrap_or(serde_json::Value::Null),
        created_at: r.try_get("created_at")?,
    })
}

fn attachment_from_row(r: &AnyRow) -> StoreResult<AttachmentRow> {
    Ok(AttachmentRow {
        id: r.try_get("id")?,
        conversation_id: r.try_get("conversation_id")?,
        file_name: r.try_get("file_name")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
    })
}

/// A contact that opens a conversation of its own (a web message, a callback request): both
/// stored with the first message in one transaction.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub channel: Channel,
    pub customer_id: Option<i64>,
    pub language: String,
    pub subject: Option<String>,
    pub queue: String,
    pub priority: i64,
    pub skills: SkillSet,
    pub routed_by: String,
    pub overflow: Option<Vec<OverflowStep>>,
    pub body: String,
    /// What the customer gave besides the text (name, number to call back, ...).
    pub meta: serde_json::Value,
}

/// The routing columns of a new contact.
pub(super) struct Routed<'a> {
    pub(super) channel: Channel,
    pub(super) customer_id: Option<i64>,
    pub(super) subject: Option<&'a str>,
    pub(super) queue: &'a str,
    pub(super) priority: i64,
    pub(super) skills: &'a SkillSet,
    pub(super) routed_by: &'a str,
    pub(super) overflow: Option<&'a [OverflowStep]>,
    pub(super) conversation: i64,
    pub(super) event: serde_json::Value,
}

/// Inserts a queued inbound contact of a conversation and its `created` event.
pub(super) async fn insert_contact(
    tx: &mut super::WriteTx,
    c: Routed<'_>,
    now: i64,
) -> StoreResult<Contact> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO contacts (channel, direction, customer_id, queue, state, priority, subject, created_at, \
         updated_at, conversation_id, skills, routed_by, overflow) \
         VALUES ($1, 'inbound', $2, $3, 'queued', $4, $5, $6, $6, $7, $8, $9, $10) RETURNING {CONTACT_COLS}"
    )))
    .bind(c.channel.as_str())
    .bind(c.customer_id)
    .bind(c.queue)
    .bind(c.priority)
    .bind(c.subject)
    .bind(now)
    .bind(c.conversation)
    .bind(format_skills(c.skills))
    .bind(c.routed_by)
    .bind(c.overflow.and_then(|o| serde_json::to_string(o).ok()))
    .fetch_one(&mut **tx)
    .await?;
    let contact = contact_from_row(&row)?;
    sqlx::query(
        "INSERT INTO contact_events (contact_id, at, kind, state, queue, data) \
         VALUES ($1, $2, 'created', 'queued', $3, $4)",
    )
    .bind(contact.id)
    .bind(now)
    .bind(c.queue)
    .bind(c.event.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(contact)
}

pub(super) async fn insert_conversation(
    tx: &mut super::WriteTx,
    channel: Channel,
    customer_id: Option<i64>,
    subject: Option<&str>,
    language: &str,
    thread_key: Option<&str>,
    now: i64,
) -> StoreResult<i64> {
    Ok(sqlx::query(
        "INSERT INTO conversations (channel, customer_id, subject, language, status, created_at, updated_at, \
         thread_key) VALUES ($1, $2, $3, $4, 'open', $5, $5, $6) RETURNING id",
    )
    .bind(channel.as_str())
    .bind(customer_id)
    .bind(subject)
    .bind(language)
    .bind(now)
    .bind(thread_key)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?)
}

const MESSAGES_PER_STATEMENT: usize = 200;
const COLS_PER_MESSAGE: usize = 11;

impl Store {
    /// Stores a new chat in one transaction and returns its conversation and contact.
    pub async fn create_chat(&self, c: &NewChat, now: i64) -> StoreResult<(i64, Contact)> {
        let mut tx = self.begin_write().await?;
        let conv = insert_conversation(
            &mut tx,
            Channel::Chat,
            c.customer_id,
            c.subject.as_deref(),
            &c.language,
            None,
            now,
        )
        .await?;
        sqlx::query(
            "INSERT INTO chat_sessions (conversation_id, token_hash, visitor_name, visitor_email, visitor_phone, topic, page, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(conv)
        .bind(c.token_hash.as_str())
        .bind(c.visitor.name.as_deref())
        .bind(c.visitor.email.as_deref())
        .bind(c.visitor.phone.as_deref())
        .bind(c.visitor.topic.as_deref())
        .bind(c.visitor.page.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let contact = insert_contact(
            &mut tx,
            Routed {
                channel: Channel::Chat,
                customer_id: c.customer_id,
                subject: c.subject.as_deref(),
                queue: &c.queue,
                priority: c.priority,
                skills: &c.skills,
                routed_by: &c.routed_by,
                overflow: c.overflow.as_deref(),
                conversation: conv,
                event: serde_json::json!({ "conversation_id": conv, "rule": c.routed_by }),
            },
            now,
        )
        .await?;
        if let Some((client_id, text)) = &c.first_message {
            sqlx::query(
                "INSERT INTO messages (conversation_id, seq, sender, body, client_id, created_at) \
                 VALUES ($1, 1, 'customer', $2, $3, $4)",
            )
            .bind(conv)
            .bind(text.as_str())
            .bind(client_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((conv, contact))
    }

    /// Stores a web message or callback request: its conversation, contact and message.
    pub async fn create_inbound(&self, c: &NewInbound, now: i64) -> StoreResult<(i64, Contact)> {
        let mut tx = self.begin_write().await?;
        let conv = insert_conversation(
            &mut tx,
            c.channel,
            c.customer_id,
            c.subject.as_deref(),
            &c.language,
            None,
            now,
        )
        .await?;
        let contact = insert_contact(
            &mut tx,
            Routed {
                channel: c.channel,
                customer_id: c.customer_id,
                subject: c.subject.as_deref(),
                queue: &c.queue,
                priority: c.priority,
                skills: &c.skills,
                routed_by: &c.routed_by,
                overflow: c.overflow.as_deref(),
                conversation: conv,
                event: serde_json::json!({ "conversation_id": conv, "rule": c.routed_by }),
            },
            now,
        )
        .await?;
        sqlx::query(
            "INSERT INTO messages (conversation_id, seq, sender, body, meta, created_at) \
             VALUES ($1, 1, 'customer', $2, $3, $4)",
        )
        .bind(conv)
        .bind(c.body.as_str())
        .bind(c.meta.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((conv, contact))
    }

    /// Stores messages in one transaction, all or none.
    pub async fn insert_messages(&self, rows: &[MessageRow]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(MESSAGES_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO messages ({MESSAGE_COLS}) VALUES {}",
                value_groups(chunk.len(), COLS_PER_MESSAGE)
            );
            let mut q = sqlx::query(AssertSqlSafe(self.dialect(sql)));
            for m in chunk {
                q = q
                    .bind(m.conversation_id)
                    .bind(m.seq)
                    .bind(m.sender.as_str())
                    .bind(m.agent_id)
                    .bind(m.name.as_deref())
                    .bind(m.body.as_str())
                    .bind(m.client_id.as_deref())
                    .bind(m.event.as_deref())
                    .bind(m.attachment_id)
                    .bind(m.meta.to_string())
                    .bind(m.created_at);
            }
            q.execute(&mut *tx).await?;
        }
        let mut ids: Vec<i64> = rows.iter().map(|m| m.conversation_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let last = rows.iter().map(|m| m.created_at).max().unwrap_or(0);
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE conversations SET updated_at = $1 WHERE id IN ({})",
                super::placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(self.dialect(sql))).bind(last);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every message of a conversation in `seq` order.
    pub async fn conversation_messages(&self, conversation: i64) -> StoreResult<Vec<MessageRow>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = $1 ORDER BY seq"
        )))
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
    }

    async fn chat_where(&self, clause: &str, bind: ChatKey<'_>) -> StoreResult<Vec<ChatRow>> {
        let sql = format!(
            "SELECT c.id, c.customer_id, c.language, c.subject, c.status, s.visitor_name, s.visitor_email, \
             s.visitor_phone, s.topic, s.page FROM conversations c JOIN chat_sessions s ON s.conversation_id = c.id \
             WHERE {clause} ORDER BY c.id"
        );
        let q = sqlx::query(AssertSqlSafe(sql));
        let q = match bind {
            ChatKey::Token(t) => q.bind(t.to_string()),
            ChatKey::Id(id) => q.bind(id),
            ChatKey::None => q,
        };
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get("id")?;
            out.push(ChatRow {
                conversation_id: id,
                customer_id: r.try_get("customer_id")?,
                language: r
                    .try_get::<Option<String>, _>("language")?
                    .unwrap_or_else(|| "zh-CN".into()),
                subject: r.try_get("subject")?,
                open: r.try_get::<String, _>("status")? == "open",
                visitor: Visitor {
                    name: r.try_get("visitor_name")?,
                    email: r.try_get("visitor_email")?,
                    phone: r.try_get("visitor_phone")?,
                    topic: r.try_get("topic")?,
                    page: r.try_get("page")?,
                },
                contact: self.latest_contact(id).await?,
            });
        }
        Ok(out)
    }

    /// The latest contact of a conversation.
    pub async fn latest_contact(&self, conversation: i64) -> StoreResult<Option<Contact>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {CONTACT_COLS} FROM contacts WHERE conversation_id = $1 ORDER BY id DESC LIMIT 1"
        )))
        .bind(conversation)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| contact_from_row(&r))
        .transpose()
    }

    pub async fn chat_by_token(&self, token_hash: &str) -> StoreResult<Option<ChatRow>> {
        Ok(self
            .chat_where("s.token_hash = $1", ChatKey::Token(token_hash))
            .await?
            .pop())
    }

    pub async fn chat(&self, conversation: i64) -> StoreResult<Option<ChatRow>> {
        Ok(self
            .chat_where("c.id = $1", ChatKey::Id(conversation))
            .await?
            .pop())
    }

    /// Chats not yet over, oldest first (made live again when the hub starts).
    pub async fn open_chats(&self) -> StoreResult<Vec<ChatRow>> {
        self.chat_where("c.status = 'open'", ChatKey::None).await
    }

    /// The resume token of a chat, for re-activation (hashed tokens are all the store has).
    pub async fn chat_token_hash(&self, conversation: i64) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT token_hash FROM chat_sessions WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("token_hash")).transpose()?)
    }

    pub async fn close_conversation(&self, conversation: i64, now: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE conversations SET status = 'closed', closed_at = $1, updated_at = $1 \
             WHERE id = $2 AND status <> 'closed'",
        )
        .bind(now)
        .bind(conversation)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    /// Links a conversation (and its contacts) to a customer found or created later.
    pub async fn set_conversation_customer(
        &self,
        conversation: i64,
        customer: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE conversations SET customer_id = $1 WHERE id = $2")
            .bind(customer)
            .bind(conversation)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE contacts SET customer_id = $1 WHERE conversation_id = $2")
            .bind(customer)
            .bind(conversation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A further contact of an existing conversation (a transfer, a split thread), queued;
    /// `origin` says where it came from (stored with its `created` event).
    #[allow(clippy::too_many_arguments)]
    pub async fn create_follow_up_contact(
        &self,
        conversation: i64,
        channel: Channel,
        customer_id: Option<i64>,
        subject: Option<&str>,
        queue: &str,
        priority: i64,
        skills: &SkillSet,
        routed_by: &str,
        origin: serde_json::Value,
        now: i64,
    ) -> StoreResult<Contact> {
        let mut tx = self.begin_write().await?;
        let contact = insert_contact(
            &mut tx,
            Routed {
                channel,
                customer_id,
                subject,
                queue,
                priority,
                skills,
                routed_by,
                overflow: None,
                conversation,
                event: {
                    let mut e = origin;
                    e["conversation_id"] = serde_json::json!(conversation);
                    e
                },
            },
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(contact)
    }

    /// The extra skills routing gave a contact (`skill:level,...`).
    pub async fn contact_skills(&self, contact: i64) -> StoreResult<String> {
        let row = sqlx::query("SELECT skills FROM contacts WHERE id = $1")
            .bind(contact)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(row.try_get("skills")?)
    }

    pub async fn create_attachment(
        &self,
        conversation: i64,
        file_name: &str,
        content_type: &str,
        data: &[u8],
        sha256: &str,
        now: i64,
    ) -> StoreResult<AttachmentRow> {
        let row = sqlx::query(
            "INSERT INTO attachments (conversation_id, file_name, content_type, size, sha256, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, conversation_id, file_name, content_type, size, sha256",
        )
        .bind(conversation)
        .bind(file_name)
        .bind(content_type)
        .bind(data.len() as i64)
        .bind(sha256)
        .bind(data.to_vec())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        attachment_from_row(&row)
    }

    pub async fn attachment(&self, id: i64) -> StoreResult<(AttachmentRow, Vec<u8>)> {
        let row = sqlx::query(
            "SELECT id, conversation_id, file_name, content_type, size, sha256, data FROM attachments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok((attachment_from_row(&row)?, row.try_get("data")?))
    }

    pub async fn attachments_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<AttachmentRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id, conversation_id, file_name, content_type, size, sha256 FROM attachments WHERE id IN ({})",
            super::placeholders(1, ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(self.dialect(sql)));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(attachment_from_row)
            .collect()
    }

    pub async fn canned_responses(&self) -> StoreResult<Vec<CannedResponse>> {
        sqlx::query("SELECT id, title, body, language FROM canned_responses ORDER BY title, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(CannedResponse {
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    body: r.try_get("body")?,
                    language: r.try_get("language")?,
                })
            })
            .collect()
    }

    pub async fn create_canned_response(
        &self,
        title: &str,
        body: &str,
        language: Option<&str>,
        now: i64,
    ) -> StoreResult<CannedResponse> {
        let id: i64 = sqlx::query(
            "INSERT INTO canned_responses (title, body, language, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(title)
        .bind(body)
        .bind(language)
        .bind(now)
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        Ok(CannedResponse {
            id,
            title: title.into(),
            body: body.into(),
            language: language.map(String::from),
        })
    }

    pub async fn delete_canned_response(&self, id: i64) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let done = sqlx::query("DELETE FROM canned_responses WHERE id = $1")
            .bind(id)
            .execute(&self.write_pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

enum ChatKey<'a> {
    Token(&'a str),
    Id(i64),
    None,
}
