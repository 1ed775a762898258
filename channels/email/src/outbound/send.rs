//! Sending composed messages through the configured relay, with retries on the
//! [`RetrySchedule`] and a report of every attempt (so the hub can show a failed send).

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::compose::ComposedEmail;
use crate::backoff::RetrySchedule;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelaySecurity {
    /// Plain text (a relay on the same host or a trusted network).
    None,
    /// STARTTLS required (submission port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayConfig {
    pub host: String,
    pub port: u16,
    pub security: RelaySecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Our name in EHLO.
    pub hello_name: String,
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM) for a relay with a private CA.
    pub extra_roots_pem: Option<PathBuf>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 587,
            security: RelaySecurity::StartTls,
            username: None,
            password: None,
            hello_name: "localhost".into(),
            timeout: Duration::from_secs(60),
            extra_roots_pem: None,
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The relay accepted the message; its reply.
    Sent { reply: String },
    /// Worth retrying: connection failure, timeout, 4xx.
    Transient { error: String },
    /// Will not succeed: 5xx, bad address, TLS refused.
    Permanent { error: String },
}

/// One attempt, as reported to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptReport {
    pub message_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    /// When the next attempt will be made, if there will be one.
    pub next_attempt: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("relay configuration: {0}")]
    Config(String),
}

/// A sender over lettre's tokio SMTP transport (one connection per message, no pool).
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    schedule: RetrySchedule,
}

impl Sender {
    pub fn new(relay: &RelayConfig, schedule: RetrySchedule) -> Result<Self, SenderError> {
        let config_err = |e: lettre::transport::smtp::Error| SenderError::Config(e.to_string());
        let tls = match relay.security {
            RelaySecurity::None => Tls::None,
            security => {
                let mut params = TlsParameters::builder(relay.host.clone());
                if let Some(path) = &relay.extra_roots_pem {
                    let pem = std::fs::read(path)
                        .map_err(|e| SenderError::Config(format!("{}: {e}", path.display())))?;
                    params = params
                        .add_root_certificate(Certificate::from_pem(&pem).map_err(config_err)?);
                }
                let params = params.build_rustls().map_err(config_err)?;
                if security == RelaySecurity::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.host.clone())
                .port(relay.port)
                .tls(tls)
                .timeout(Some(relay.timeout))
                .hello_name(ClientId::Domain(relay.hello_name.clone()));
        if let (Some(user), Some(pass)) = (&relay.username, &relay.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            schedule,
        })
    }

    pub fn schedule(&self) -> &RetrySchedule {
        &self.schedule
    }

    /// One attempt.
    pub async fn send_once(&self, mail: &ComposedEmail) -> AttemptOutcome {
        let envelope = match envelope(mail) {
            Ok(e) => e,
            Err(error) => return AttemptOutcome::Permanent { error },
        };
        // lettre ends the data with CRLF.CRLF itself; without this the relay would receive
        // one more empty line than the bytes the hub stores.
        let body = mail.raw.strip_suffix(b"\r\n").unwrap_or(&mail.raw);
        match self.transport.send_raw(&envelope, body).await {
            Ok(response) => AttemptOutcome::Sent {
                reply: format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ),
            },
            Err(e) if e.is_permanent() => AttemptOutcome::Permanent {
                error: e.to_string(),
            },
            Err(e) => AttemptOutcome::Transient {
                error: e.to_string(),
            },
        }
    }

    /// Attempts until sent, refused for good, or the schedule is used up. `report` sees
    /// every attempt; the result is the last one.
    pub async fn send_with_retry(
        &self,
        mail: &ComposedEmail,
        mut report: impl FnMut(&AttemptReport),
    ) -> AttemptReport {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.send_once(mail).await;
            let at = Utc::now();
            let next_attempt = match outcome {
                AttemptOutcome::Transient { .. } => self.schedule.next_attempt(at, attempt),
                _ => None,
            };
            let r = AttemptReport {
                message_id: mail.message_id.clone(),
                attempt,
                at,
                outcome,
                next_attempt,
            };
            match &r.outcome {
                AttemptOutcome::Sent { .. } => tracing::info!(attempt, "outbound email sent"),
                AttemptOutcome::Transient { error } | AttemptOutcome::Permanent { error } => {
                    // A relay's reply often quotes the recipient: details at debug only.
                    tracing::warn!(
                        attempt,
                        retry = r.next_attempt.is_some(),
                        "outbound email not sent"
                    );
                    tracing::debug!(attempt, %error, "outbound email not sent");
                }
            }
            report(&r);
            let Some(next) = r.next_attempt else {
                return r;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
        }
    }
}

fn envelope(mail: &ComposedEmail) -> Result<Envelope, String> {
    let from = mail
        .envelope_from
        .parse()
        .map_err(|_| format!("invalid sender {:?}", mail.envelope_from))?;
    let to = mail
        .recipients
        .iter()
        .map(|r| r.parse().map_err(|_| format!("invalid recipient {r:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| e.to_string())
}
