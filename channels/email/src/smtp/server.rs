//! The tokio driver of [`proto::Session`]: a listener, one task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::proto::{Output, Protocol, Session, SessionConfig};
use crate::io::MaybeTls;
use crate::sink::{InboundMail, MailSink, SinkError};

/// How TLS is offered.
#[derive(Clone, Default)]
pub enum TlsMode {
    /// Plain text only.
    #[default]
    None,
    /// STARTTLS offered in EHLO (port 25/587 style).
    StartTls(Arc<ServerConfig>),
    /// TLS from the first byte (port 465 style).
    Implicit(Arc<ServerConfig>),
}

/// The server: session limits plus connection-level settings.
#[derive(Clone)]
pub struct SmtpServerConfig {
    pub session: SessionConfig,
    pub tls: TlsMode,
    /// Connections served at once; more get 421 and are closed.
    pub max_connections: usize,
    /// A sink slower than this counts as a temporary failure (451).
    pub sink_timeout: Duration,
    /// TLS handshakes slower than this are dropped.
    pub tls_handshake_timeout: Duration,
}

impl Default for SmtpServerConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            tls: TlsMode::None,
            max_connections: 256,
            sink_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// A running SMTP/LMTP server. Dropping the handle does not stop it; call [`shutdown`].
///
/// [`shutdown`]: SmtpServer::shutdown
pub struct SmtpServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    /// Binds `addr` (port 0 for any) and serves until [`SmtpServer::shutdown`].
    pub async fn start<S: MailSink>(
        addr: SocketAddr,
        config: SmtpServerConfig,
        sink: Arc<S>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, Arc::new(config), sink, stop_rx));
        Ok(Self {
            local_addr,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; open sessions get 421 and close (a delivery in progress finishes).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop<S: MailSink>(
    listener: TcpListener,
    config: Arc<SmtpServerConfig>,
    sink: Arc<S>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let session_cfg = Arc::new(config.session.clone());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "smtp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    connections.spawn(refuse_busy(tcp));
                    continue;
                };
                let (config, session_cfg, sink, stop) =
                    (config.clone(), session_cfg.clone(), sink.clone(), stop.clone());
                connections.spawn(async move {
                    if let Err(e) = serve(tcp, peer, &config, session_cfg, &*sink, stop).await {
                        tracing::debug!(error = %e, "smtp connection ended with an error");
                    }
                    drop(permit);
                });
            }
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn refuse_busy(mut tcp: TcpStream) {
    let _ = tcp
        .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
        .await;
    let _ = tcp.shutdown().await;
}

type Conn = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;

async fn serve<S: MailSink>(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &SmtpServerConfig,
    session_cfg: Arc<SessionConfig>,
    sink: &S,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    let (mut conn, tls_active): (Conn, bool) = match &config.tls {
        TlsMode::Implicit(tls) => {
            let accept = TlsAcceptor::from(tls.clone()).accept(tcp);
            let stream = tokio::time::timeout(config.tls_handshake_timeout, accept)
                .await
                .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
            (MaybeTls::Tls(Box::new(stream)), true)
        }
        _ => (MaybeTls::Plain(tcp), false),
    };
    let starttls = match &config.tls {
        TlsMode::StartTls(tls) => Some(tls.clone()),
        _ => None,
    };
    let protocol = session_cfg.protocol;
    let mut session = Session::new(
        session_cfg,
        Instant::now(),
        Some(peer),
        starttls.is_some(),
        tls_active,
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut replies = Vec::new();
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Reply(bytes) => replies.extend_from_slice(&bytes),
                Output::Deliver(delivery) => {
                    flush(&mut conn, &mut replies).await?;
                    let mail = InboundMail {
                        envelope: delivery.envelope,
                        raw: delivery.raw,
                        received_at: Utc::now(),
                    };
                    let size = mail.raw.len();
                    let result = tokio::time::timeout(config.sink_timeout, sink.deliver(mail))
                        .await
                        .unwrap_or_else(|_| Err(SinkError::Temporary("storage timed out".into())));
                    // The sink's and relay's texts can name people: details at debug only.
                    match &result {
                        Ok(_) => tracing::info!(?protocol, size, "inbound email stored"),
                        Err(e) => {
                            let temporary = matches!(e, SinkError::Temporary(_));
                            tracing::warn!(?protocol, size, temporary, "inbound email not stored");
                            tracing::debug!(error = %e, "inbound email not stored");
                        }
                    }
                    session.handle_delivery(Instant::now(), result);
                }
                Output::StartTls => {
                    flush(&mut conn, &mut replies).await?;
                    let (MaybeTls::Plain(tcp), Some(tls)) = (conn, starttls.as_ref()) else {
                        return Ok(());
                    };
                    let accept = TlsAcceptor::from(tls.clone()).accept(tcp);
                    let stream = tokio::time::timeout(config.tls_handshake_timeout, accept)
                        .await
                        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
                    conn = MaybeTls::Tls(Box::new(stream));
                    session.tls_established(Instant::now());
                }
                Output::Close => {
                    flush(&mut conn, &mut replies).await?;
                    let _ = conn.shutdown().await;
                    return Ok(());
                }
            }
        }
        flush(&mut conn, &mut replies).await?;
        if session.is_closed() {
            return Ok(());
        }
        let deadline = session
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            read = conn.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    session.handle_eof();
                    return Ok(());
                }
                session.handle_input(Instant::now(), &buf[..n]);
            }
            _ = tokio::time::sleep_until(deadline.into()) => session.handle_timeout(Instant::now()),
            _ = stop.changed() => session.shutdown(),
        }
    }
}

async fn flush(conn: &mut Conn, replies: &mut Vec<u8>) -> std::io::Result<()> {
    if !replies.is_empty() {
        conn.write_all(replies).await?;
        conn.flush().await?;
        replies.clear();
    }
    Ok(())
}

impl std::fmt::Debug for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMode::None => "None",
            TlsMode::StartTls(_) => "StartTls",
            TlsMode::Implicit(_) => "Implicit",
        })
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Lmtp => "lmtp",
        }
    }
}
