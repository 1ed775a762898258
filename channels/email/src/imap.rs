//! IMAP polling with IDLE: fetch unseen messages, hand each to the [`MailSink`], and only
//! after it is stored mark it `\Seen` (or move it to a folder). A message the sink fails to
//! store stays unseen and is fetched again on the next poll. Connection loss is retried with
//! the [`RetrySchedule`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::{Client, Session};
use chrono::Utc;
use futures_util::TryStreamExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;

use crate::backoff::RetrySchedule;
use crate::io::MaybeTls;
use crate::sink::{Envelope, InboundMail, MailSink, Recipient, SinkError, Source};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImapSecurity {
    /// Plain text (a server on the same host).
    Plain,
    /// TLS from the first byte (port 993).
    #[default]
    Tls,
}

/// What happens to a message once the sink stored it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AfterStore {
    #[default]
    MarkSeen,
    /// Mark seen and move to this folder (IMAP MOVE, or COPY + delete where MOVE is missing).
    MoveTo(String),
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    /// Extra trusted CA certificates (PEM) for a server with a private CA.
    pub extra_roots_pem: Option<PathBuf>,
    pub username: String,
    pub password: String,
    pub mailbox: String,
    pub after_store: AfterStore,
    /// The local address this mailbox receives for, and its key (as for SMTP recipients).
    pub address: String,
    pub key: String,
    /// IDLE is restarted this often (servers drop IDLE after 30 minutes).
    pub idle_period: Duration,
    /// Polling period for servers without IDLE.
    pub poll_interval: Duration,
    /// After a temporary sink failure, the next poll comes at most this late.
    pub retry_failed_after: Duration,
    /// Messages handled per poll (the rest wait for the next one).
    pub batch: usize,
    pub reconnect: RetrySchedule,
    pub timeout: Duration,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 993,
            security: ImapSecurity::Tls,
            extra_roots_pem: None,
            username: String::new(),
            password: String::new(),
            mailbox: "INBOX".into(),
            after_store: AfterStore::MarkSeen,
            address: String::new(),
            key: String::new(),
            idle_period: Duration::from_secs(25 * 60),
            poll_interval: Duration::from_secs(60),
            retry_failed_after: Duration::from_secs(30),
            batch: 50,
            reconnect: RetrySchedule {
                initial: Duration::from_secs(1),
                factor: 2,
                max_delay: Duration::from_secs(300),
                max_attempts: 0,
            },
            timeout: Duration::from_secs(60),
        }
    }
}

/// What the poller reports, for the hub's status display and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImapEvent {
    Connected {
        idle: bool,
    },
    Stored {
        uid: u32,
        id: String,
    },
    /// The sink did not store the message: a temporary failure leaves it unseen for the
    /// next poll; a permanent refusal marks it seen (it would fail forever).
    NotStored {
        uid: u32,
        error: SinkError,
    },
    Polled(PollReport),
    Disconnected {
        error: String,
        retry_in: Duration,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub unseen: usize,
    pub stored: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("imap: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("timed out")]
    Timeout,
    #[error("server closed the connection")]
    Closed,
}

type Stream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;
type ImapSession = Session<Stream>;

/// Polls one mailbox for a sink.
pub struct ImapPoller<S> {
    config: ImapConfig,
    sink: Arc<S>,
    events: Option<mpsc::UnboundedSender<ImapEvent>>,
}

impl<S: MailSink> ImapPoller<S> {
    pub fn new(config: ImapConfig, sink: Arc<S>) -> Self {
        Self {
            config,
            sink,
            events: None,
        }
    }

    /// Reports [`ImapEvent`]s to `events`.
    pub fn with_events(mut self, events: mpsc::UnboundedSender<ImapEvent>) -> Self {
        self.events = Some(events);
        self
    }

    fn emit(&self, e: ImapEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    /// Runs until `stop` turns true: poll, IDLE (or sleep), poll again; reconnects with
    /// back-off when the connection fails.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            let error = match self.session_loop(&mut stop, &mut failures).await {
                Ok(()) => return,
                Err(e) => e,
            };
            failures += 1;
            let retry_in = self.config.reconnect.delay(failures);
            tracing::warn!(error = %error, ?retry_in, "imap connection failed");
            self.emit(ImapEvent::Disconnected {
                error: error.to_string(),
                retry_in,
            });
            tokio::select! {
                _ = tokio::time::sleep(retry_in) => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn session_loop(
        &self,
        stop: &mut watch::Receiver<bool>,
        failures: &mut u32,
    ) -> Result<(), ImapError> {
        let mut session = self.connect().await?;
        let idle = session.capabilities().await?.has_str("IDLE");
        session.select(&self.config.mailbox).await?;
        *failures = 0;
        self.emit(ImapEvent::Connected { idle });
        loop {
            let report = self.poll(&mut session).await?;
            let mut wait = if idle {
                self.config.idle_period
            } else {
                self.config.poll_interval
            };
            if report.failed > 0 {
                wait = wait.min(self.config.retry_failed_after);
            }
            self.emit(ImapEvent::Polled(report));
            while session.unsolicited_responses.try_recv().is_ok() {}
            if idle {
                session = self.idle(session, wait, stop).await?;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
            if *stop.borrow() {
                let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
                return Ok(());
            }
        }
    }

    async fn connect(&self) -> Result<ImapSession, ImapError> {
        let c = &self.config;
        let work = async {
            let tcp = TcpStream::connect((c.host.as_str(), c.port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream: Stream = match c.security {
                ImapSecurity::Plain => MaybeTls::Plain(tcp),
                ImapSecurity::Tls => {
                    let tls = crate::tls::client_config(c.extra_roots_pem.as_deref())?;
                    let name = crate::tls::server_name(&c.host)?;
                    MaybeTls::Tls(Box::new(TlsConnector::from(tls).connect(name, tcp).await?))
                }
            };
            let mut client = Client::new(stream);
            client.read_response().await?.ok_or(ImapError::Closed)?;
            client
                .login(&c.username, &c.password)
                .await
                .map_err(|(e, _)| ImapError::Imap(e))
        };
        tokio::time::timeout(c.timeout, work)
            .await
            .map_err(|_| ImapError::Timeout)?
    }

    /// Fetches the unseen messages and delivers them one by one.
    async fn poll(&self, session: &mut ImapSession) -> Result<PollReport, ImapError> {
        let timeout = self.config.timeout;
        let mut uids: Vec<u32> = with_timeout(timeout, session.uid_search("UNSEEN"))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        let mut report = PollReport {
            unseen: uids.len(),
            ..PollReport::default()
        };
        for uid in uids.into_iter().take(self.config.batch) {
            let raw = {
                let fetches: Vec<_> = with_timeout(timeout, async {
                    session
                        .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                        .await?
                        .try_collect()
                        .await
                })
                .await?;
                let Some(body) = fetches
                    .iter()
                    .find(|f| f.uid == Some(uid))
                    .and_then(|f| f.body())
                else {
                    continue; // expunged meanwhile
                };
                body.to_vec()
            };
            let mail = InboundMail {
                envelope: Envelope {
                    mail_from: return_path(&raw),
                    recipients: vec![Recipient {
                        address: self.config.address.to_lowercase(),
                        key: self.config.key.clone(),
                    }],
                    helo: String::new(),
                    source: Source::Imap {
                        account: self.config.username.clone(),
                        mailbox: self.config.mailbox.clone(),
                        uid,
                    },
                },
                raw,
                received_at: Utc::now(),
            };
            match self.sink.deliver(mail).await {
                Ok(stored) => {
                    self.after_store(session, uid).await?;
                    report.stored += 1;
                    self.emit(ImapEvent::Stored { uid, id: stored.id });
                }
                Err(error) => {
                    if matches!(error, SinkError::Permanent(_)) {
                        self.mark_seen(session, uid).await?;
                    } else {
                        report.failed += 1;
                    }
                    tracing::warn!(uid, "imap message not stored");
                    tracing::debug!(uid, %error, "imap message not stored");
                    self.emit(ImapEvent::NotStored { uid, error });
                }
            }
        }
        Ok(report)
    }

    async fn mark_seen(&self, session: &mut ImapSession, uid: u32) -> Result<(), ImapError> {
        with_timeout(self.config.timeout, async {
            session
                .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(())
    }

    async fn after_store(&self, session: &mut ImapSession, uid: u32) -> Result<(), ImapError> {
        self.mark_seen(session, uid).await?;
        let AfterStore::MoveTo(folder) = &self.config.after_store else {
            return Ok(());
        };
        let timeout = self.config.timeout;
        let caps = with_timeout(timeout, session.capabilities()).await?;
        if caps.has_str("MOVE") {
            with_timeout(timeout, session.uid_mv(uid.to_string(), folder)).await?;
        } else {
            with_timeout(timeout, session.uid_copy(uid.to_string(), folder)).await?;
            with_timeout(timeout, async {
                session
                    .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            with_timeout(timeout, async {
                session.expunge().await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
        Ok(())
    }

    async fn idle(
        &self,
        session: ImapSession,
        period: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<ImapSession, ImapError> {
        let mut handle = session.idle();
        with_timeout(self.config.timeout, handle.init()).await?;
        {
            let (wait, interrupt) = handle.wait_with_timeout(period);
            let mut wait = std::pin::pin!(wait);
            let response = tokio::select! {
                r = &mut wait => r,
                _ = stop.changed() => {
                    drop(interrupt);
                    wait.await
                }
            }?;
            if let IdleResponse::NewData(_) = response {
                tracing::debug!("imap idle: new data");
            }
        }
        with_timeout(self.config.timeout, handle.done()).await
    }
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ImapError::Timeout),
    }
}

/// The envelope sender for a message read from a mailbox: Return-Path, else From.
fn return_path(raw: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse_headers(raw)
        .and_then(|h| h.return_address().map(str::to_string))
        .unwrap_or_default()
}
