//! What the ACD needs from the store: agent profiles, routing of contacts, and the queue to
//! resume after a restart.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use super::{get_enum, Store, StoreResult};
use crate::acd::types::{Capacity, OverflowStep, Skill, SkillSet};
use crate::domain::{Channel, ContactState};

/// An agent's skills and capacity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentProfile {
    pub skills: HashMap<String, u8>,
    pub capacity: Capacity,
}

/// Parses `"mandarin:5,billing:3"`.
pub fn parse_skills(s: &str) -> Result<Vec<Skill>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, level) = p.split_once(':').unwrap_or((p, "1"));
            let level: u8 = level
                .trim()
                .parse()
                .ok()
                .filter(|l| (1..=10).contains(l))
                .ok_or_else(|| format!("skill {p:?}: the level must be 1 to 10"))?;
            let name = name.trim();
            if name.is_empty()
                || name.len() > 40
                || !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!("skill {p:?}: a name of letters, digits, _ or -"));
            }
            Ok(Skill {
                name: name.to_string(),
                level,
            })
        })
        .collect()
}

pub fn format_skills(skills: &SkillSet) -> String {
    skills
        .0
        .iter()
        .map(|s| format!("{}:{}", s.name, s.level))
        .collect::<Vec<_>>()
        .join(",")
}

/// A contact to put back in the ACD after a restart.
#[derive(Debug, Clone)]
pub struct ResumableContact {
    pub id: i64,
    pub channel: Channel,
    pub state: ContactState,
    pub queue: Option<String>,
    pub priority: i64,
    pub skills: String,
    pub customer_id: Option<i64>,
    pub agent_id: Option<i64>,
    pub created_at: i64,
    /// The routing rule's own overflow steps, if it gave the contact any.
    pub overflow: Option<Vec<OverflowStep>>,
}

impl Store {
    pub async fn agent_profile(&self, user_id: i64) -> StoreResult<AgentProfile> {
        let row = sqlx::query(
            "SELECT skills, voice, chat, email, fax, voice_interrupts_digital FROM agent_profiles WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(AgentProfile::default());
        };
        let skills: String = r.try_get("skills")?;
        let cap = |c: &str| -> StoreResult<u8> { Ok(r.try_get::<i64, _>(c)?.clamp(0, 50) as u8) };
        Ok(AgentProfile {
            skills: parse_skills(&skills)
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.level))
                .collect(),
            capacity: Capacity {
                voice: cap("voice")?.min(1),
                chat: cap("chat")?,
                email: cap("email")?,
                fax: cap("fax")?,
                voice_interrupts_digital: r.try_get::<i64, _>("voice_interrupts_digital")? != 0,
            },
        })
    }

    pub async fn set_agent_profile(
        &self,
        user_id: i64,
        p: &AgentProfile,
        now: i64,
    ) -> StoreResult<()> {
        let mut skills: Vec<Skill> = p
            .skills
            .iter()
            .map(|(n, l)| Skill {
                name: n.clone(),
                level: *l,
            })
            .collect();
        skills.sort_by(|a, b| a.name.cmp(&b.name));
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO agent_profiles (user_id, skills, voice, chat, email, fax, voice_interrupts_digital, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id) DO UPDATE SET skills = excluded.skills, \
             voice = excluded.voice, chat = excluded.chat, email = excluded.email, fax = excluded.fax, \
             voice_interrupts_digital = excluded.voice_interrupts_digital, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(format_skills(&SkillSet(skills)))
        .bind(p.capacity.voice as i64)
        .bind(p.capacity.chat as i64)
        .bind(p.capacity.email as i64)
        .bind(p.capacity.fax as i64)
        .bind(p.capacity.voice_interrupts_digital as i64)
        .bind(now)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    /// The agent who last handled a contact of this customer, for sticky routing.
    pub async fn last_agent(&self, customer_id: i64) -> StoreResult<Option<i64>> {
        let row = sqlx::query(AssertSqlSafe(last_agent_query("$1")))
            .bind(customer_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("agent_id")).transpose()?)
    }

    /// Records what routing decided for a contact.
    pub async fn set_contact_routing(
        &self,
        id: i64,
        queue: &str,
        priority: i64,
        skills: &SkillSet,
        routed_by: &str,
        overflow: Option<&[OverflowStep]>,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE contacts SET queue = $1, priority = $2, skills = $3, routed_by = $4, overflow = $5 WHERE id = $6",
        )
        .bind(queue)
        .bind(priority)
        .bind(format_skills(skills))
        .bind(routed_by)
        .bind(overflow.and_then(|o| serde_json::to_string(o).ok()))
        .bind(id)
        .execute(&self.write_pool)
        .await?;
        Ok(())
    }

    /// Contacts that were waiting or in hand when the hub stopped, oldest first.
    pub async fn unfinished_contacts(&self) -> StoreResult<Vec<ResumableContact>> {
        let rows = sqlx::query(AssertSqlSafe(
            "SELECT id, channel, state, queue, priority, skills, customer_id, agent_id, created_at, overflow FROM contacts \
             WHERE state IN ('queued', 'offered', 'connected', 'wrap_up') ORDER BY created_at, id"
                .to_string(),
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ResumableContact {
                    id: r.try_get("id")?,
                    channel: get_enum(r, "channel")?,
                    state: get_enum(r, "state")?,
                    queue: r.try_get("queue")?,
                    priority: r.try_get("priority")?,
                    skills: r.try_get("skills")?,
                    customer_id: r.try_get("customer_id")?,
                    agent_id: r.try_get("agent_id")?,
                    created_at: r.try_get("created_at")?,
                    overflow: r
                        .try_get::<Option<String>, _>("overflow")?
                        .and_then(|o| serde_json::from_str(&o).ok()),
                })
            })
            .collect()
    }
}

/// The agent who last handled a customer, whose id is the parameter `customer` (`$n`); also
/// read together with an email's threading facts (`Store::email_thread_facts`).
pub(super) fn last_agent_query(customer: &str) -> String {
    format!(
        "SELECT agent_id FROM contacts WHERE customer_id = {customer} AND agent_id IS NOT NULL \
         ORDER BY created_at DESC LIMIT 1"
    )
}
