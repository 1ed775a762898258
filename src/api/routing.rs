//! Contacts into the ACD, queue figures, agent profiles and the routing rules' status.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::acd::rules::{ContactAttributes, RuleError};
use crate::acd::stats::{AgentFigures, QueueFigures};
use crate::acd::types::{Capacity, ContactSpec};
use crate::auth::AuthUser;
use crate::domain::{Channel, Contact, ContactState, Direction, Role};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::server::AppState;
use crate::store::{parse_skills, AgentProfile, NewContact, StoreError};

const EVERYONE: &[Role] = &[Role::Agent, Role::Supervisor, Role::Admin];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContactRequest {
    pub channel: Channel,
    pub customer_id: Option<i64>,
    pub subject: Option<String>,
    /// A queue to use directly; absent = the routing rules decide.
    pub queue: Option<String>,
    /// Overrides the rules' priority.
    pub priority: Option<i64>,
    /// Routing attributes: the number or address contacted, an IVR choice or chat topic, tags.
    pub called: Option<String>,
    pub ivr_choice: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactCreated {
    pub contact: Contact,
    /// The routing rule that placed it (absent when a queue was given).
    pub rule: Option<String>,
}

/// Create a contact and hand it to the ACD (callbacks, web forms, tests; channels do the same).
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", request_body = NewContactRequest,
    responses((status = 201, body = ContactCreated), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_contact(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<NewContactRequest>,
) -> Result<(StatusCode, Json<ContactCreated>), ApiError> {
    user.require(EVERYONE)?;
    let subject = req
        .subject
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if subject.as_ref().is_some_and(|s| s.chars().count() > 500) {
        return Err(ApiError::unprocessable("subject: at most 500 characters"));
    }
    let customer = match req.customer_id {
        Some(id) => Some(state.store.get_customer(id).await.map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("customer"),
            e => e.into(),
        })?),
        None => None,
    };
    let now = state.now();
    let rules = state.routing.rules();
    let mut attrs = ContactAttributes::new(req.channel);
    attrs.called = req.called;
    attrs.ivr_choice = req.ivr_choice;
    attrs.tags = req.tags;
    if let Some(c) = &customer {
        attrs.tier = Some(c.tier.clone());
        attrs.language = c.language.clone();
        attrs.tags.extend(c.tags.iter().cloned());
    }
    let decision = rules.route(&attrs, now);
    // A rule's own overflow applies only when that rule chose the queue.
    let overflow = if req.queue.is_none() {
        decision.overflow.clone()
    } else {
        None
    };
    let (queue, rule) = match req.queue {
        Some(q) => {
            if rules.queue(&q).is_none() {
                return Err(ApiError::unprocessable(format!("unknown queue {q:?}")));
            }
            (q, None)
        }
        None => (decision.queue.clone(), Some(decision.rule.clone())),
    };
    let priority = req.priority.unwrap_or(decision.priority);
    let contact = state
        .store
        .create_contact(
            &NewContact {
                channel: req.channel,
                direction: if req.channel == Channel::Outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                customer_id: req.customer_id,
                case_id: None,
                queue: Some(queue.clone()),
                state: ContactState::Queued,
                priority,
                subject,
                agent_id: None,
                conversation_id: None,
            },
            now,
        )
        .await?;
    state
        .store
        .set_contact_routing(
            contact.id,
            &queue,
            priority,
            &decision.extra_skills,
            rule.as_deref().unwrap_or("explicit"),
            overflow.as_deref(),
        )
        .await?;
    let last_agent = match req.customer_id {
        Some(c) => state.store.last_agent(c).await?,
        None => None,
    };
    // Stored first, then routed: a contact the ACD knows is always in the database.
    state
        .hub
        .route(
            ContactSpec {
                id: contact.id,
                channel: req.channel,
                queue,
                priority,
                enqueued_at: now,
                extra_skills: decision.extra_skills,
                last_agent,
            },
            overflow,
        )
        .await;
    Ok((StatusCode::CREATED, Json(ContactCreated { contact, rule })))
}

#[derive(Serialize, ToSchema)]
pub struct Position {
    /// 1 = next in line.
    pub position: usize,
    pub expected_wait_secs: i64,
}

/// A waiting contact's place in line and expected wait (for the chat widget, IVR announcements).
#[utoipa::path(get, path = "/api/v1/contacts/{id}/position", tag = "contacts",
    responses((status = 200, body = Position), (status = 404, body = crate::error::ErrorBody, description = "`not_waiting`")))]
pub async fn position(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Position>, ApiError> {
    user.require(EVERYONE)?;
    match state
        .hub
        .position(id)
        .await
        .map_err(|_| ApiError::internal())?
    {
        Some((position, wait_ms)) => Ok(Json(Position {
            position,
            expected_wait_secs: (wait_ms + 999) / 1000,
        })),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_waiting",
            "this contact is not waiting in a queue",
        )),
    }
}

#[derive(Serialize, ToSchema)]
pub struct QueueLive {
    pub id: Option<i64>,
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// Contacts waiting now, all channels.
    pub waiting: u64,
    /// ARCHITECTURE §7 figures per channel, the same the supervisor socket streams.
    pub figures: Vec<QueueFigures>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<QueueLive>,
    pub agents: AgentFigures,
}

/// Queues with their live figures (same definitions as the supervisor socket and reports).
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues",
    responses((status = 200, body = QueueList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn queues(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<QueueList>, ApiError> {
    user.require(EVERYONE)?;
    let snapshot = state.hub.stats().await.map_err(|_| ApiError::internal())?;
    let stored = state.store.list_queues().await?;
    let rules = state.routing.rules();
    let mut names: Vec<String> = rules.queues.iter().map(|q| q.name.clone()).collect();
    for q in &stored {
        if !names.contains(&q.name) {
            names.push(q.name.clone());
        }
    }
    let queues = names
        .into_iter()
        .map(|name| {
            let meta = stored.iter().find(|q| q.name == name);
            let figures: Vec<QueueFigures> = snapshot
                .queues
                .iter()
                .filter(|f| f.queue == name)
                .cloned()
                .collect();
            QueueLive {
                id: meta.map(|m| m.id),
                display_name: meta.map_or_else(|| name.clone(), |m| m.display_name.clone()),
                description: meta.map(|m| m.description.clone()).unwrap_or_default(),
                waiting: figures.iter().map(|f| f.waiting).sum(),
                figures,
                name,
            }
        })
        .collect();
    Ok(Json(QueueList {
        queues,
        agents: snapshot.agents.clone(),
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// "skill:level" pairs, e.g. ["mandarin:5", "billing:3"].
    pub skills: Vec<String>,
    pub voice: Option<u8>,
    pub chat: Option<u8>,
    pub email: Option<u8>,
    pub fax: Option<u8>,
    pub voice_interrupts_digital: Option<bool>,
}

/// Set an agent's skills and capacity (supervisor or admin); applies at once if logged in.
#[utoipa::path(put, path = "/api/v1/users/{id}/profile", tag = "users", request_body = ProfileBody,
    responses((status = 200, body = ProfileBody), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn set_profile(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> Result<Json<ProfileBody>, ApiError> {
    user.require(&[Role::Supervisor, Role::Admin])?;
    state.store.get_user(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("user"),
        e => e.into(),
    })?;
    let skills = parse_skills(&body.skills.join(",")).map_err(ApiError::unprocessable)?;
    let d = Capacity::default();
    let cap = |v: Option<u8>, default: u8, max: u8| -> Result<u8, ApiError> {
        let v = v.unwrap_or(default);
        if v > max {
            return Err(ApiError::unprocessable(format!(
                "a capacity is at most {max}"
            )));
        }
        Ok(v)
    };
    let profile = AgentProfile {
        skills: skills.into_iter().map(|s| (s.name, s.level)).collect(),
        capacity: Capacity {
            voice: cap(body.voice, d.voice, 1)?,
            chat: cap(body.chat, d.chat, 20)?,
            email: cap(body.email, d.email, 20)?,
            fax: cap(body.fax, d.fax, 20)?,
            voice_interrupts_digital: body
                .voice_interrupts_digital
                .unwrap_or(d.voice_interrupts_digital),
        },
    };
    state
        .store
        .set_agent_profile(id, &profile, state.now())
        .await?;
    state.hub.set_profile(id, profile).await;
    Ok(Json(body))
}

#[derive(Serialize, ToSchema)]
pub struct RoutingStatus {
    pub dir: String,
    pub queues: Vec<String>,
    pub rules: Vec<String>,
    /// The last rejected edit (the rules in force are the previous valid ones).
    pub last_error: Option<RoutingErrorBody>,
}

#[derive(Serialize, ToSchema)]
pub struct RoutingErrorBody {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl From<RuleError> for RoutingErrorBody {
    fn from(e: RuleError) -> Self {
        RoutingErrorBody {
            file: e.file,
            line: e.line,
            reason: e.reason,
        }
    }
}

/// The routing rules in force and the last rejected edit (supervisor or admin).
#[utoipa::path(get, path = "/api/v1/routing", tag = "queues",
    responses((status = 200, body = RoutingStatus), (status = 403, body = crate::error::ErrorBody)))]
pub async fn routing_status(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<RoutingStatus>, ApiError> {
    user.require(&[Role::Supervisor, Role::Admin])?;
    let rules = state.routing.rules();
    Ok(Json(RoutingStatus {
        dir: state.routing.dir.display().to_string(),
        queues: rules.queues.iter().map(|q| q.name.clone()).collect(),
        rules: rules.rules().iter().map(|r| r.name.clone()).collect(),
        last_error: state.routing.last_error().map(Into::into),
    }))
}
