//! The voice channel inside the hub: a B2BUA over `channel-sip` and `channel-media`.
//!
//! - A customer's call from a trunk is answered, becomes a voice contact, and goes through the
//!   IVR (`src/ivr`, flows in `<rules dir>/ivr/ivr.toml`); queued, the caller hears music,
//!   position and comfort messages, and may press a key for a callback that keeps their place.
//! - An ACD offer rings the agent's desk phone (registered with digest to the hub's registrar);
//!   the agent answering bridges the call, recorded in stereo (customer left, agent right).
//! - Call control comes over the agent socket: hold, mute, DTMF, blind and attended transfer,
//!   3-way conference, hang-up; wrap-up follows the call.
//! - Every step lands in `contact_events`: the call record (arrival, IVR, queue, offers,
//!   answer, holds, end and who hung up, recording; the disposition at wrap-up).

pub mod agent;
mod calls;
pub mod http;
mod prompts;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use channel_sip::{AgentCredential, Secret, SharedCredentials, SipConfig as SipStackConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::hub::HubHandle;
use crate::push::AgentPush;
use crate::server::Routing;
use crate::store::Store;

pub use calls::{CallOp, Endpoint};

/// The voice channel's configuration (`[voice]`; the SIP listener and trunks are `[sip]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VoiceConfig {
    /// Address the RTP sockets bind to, and the address written in SDP (empty: the bind
    /// address, or 127.0.0.1 when it is unspecified).
    pub rtp_bind: String,
    pub rtp_advertise: String,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Prompt recordings (`<dir>/<language>/<name>.wav`, `<dir>/moh.wav`); empty: the set
    /// shipped with the project.
    pub prompts_dir: String,
    /// Where call recordings and voicemails are written; empty: `<data_dir>/recordings`.
    pub recordings_dir: String,
    /// Record every answered call (stereo WAV: customer left, agent right).
    pub record_calls: bool,
    /// Longest voicemail message.
    pub voicemail_max_secs: u64,
    /// The outbound trunk for callbacks, transfers to numbers and click-to-dial (empty: the
    /// first one configured).
    pub outbound_trunk: String,
    /// How often a waiting caller's place in line is checked.
    pub position_every_secs: u64,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            rtp_bind: "0.0.0.0".into(),
            rtp_advertise: String::new(),
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            prompts_dir: String::new(),
            recordings_dir: String::new(),
            record_calls: true,
            voicemail_max_secs: 120,
            outbound_trunk: String::new(),
            position_every_secs: 5,
        }
    }
}

impl VoiceConfig {
    pub fn recordings(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.recordings_dir.is_empty() {
            data_dir.join("recordings")
        } else {
            PathBuf::from(&self.recordings_dir)
        }
    }

    pub fn prompts(&self) -> channel_media::Prompts {
        if self.prompts_dir.is_empty() {
            channel_media::Prompts::default()
        } else {
            channel_media::Prompts::new(&self.prompts_dir)
        }
    }
}

/// The SIP stack's settings: `sip.file` (trunks, registrar, TLS…) with `sip.listen` on top.
fn sip_stack_config(config: &Config) -> anyhow::Result<SipStackConfig> {
    let file = if config.sip.file.is_empty() {
        let default = config.data_dir.join("sip.toml");
        default.is_file().then_some(default)
    } else {
        Some(PathBuf::from(&config.sip.file))
    };
    let mut stack = match file {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            SipStackConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("invalid SIP settings in {}: {e}", path.display()))?
        }
        None => SipStackConfig::default(),
    };
    stack.listen = config
        .sip
        .listen
        .parse()
        .map_err(|_| anyhow::anyhow!("sip.listen {:?} is not ip:port", config.sip.listen))?;
    Ok(stack)
}

/// What agents' sockets and the REST API ask of the voice channel.
pub(crate) enum Request {
    Control {
        agent: i64,
        contact: i64,
        op: CallOp,
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
    /// A desk-phone account changed (set or removed).
    Accounts,
    /// An agent chose where calls ring (`None`: unchanged) and whether a console is open.
    Endpoint {
        agent: i64,
        endpoint: Option<Endpoint>,
        online: bool,
        reply: oneshot::Sender<(Endpoint, bool)>,
    },
    /// The softphone's SDP offer for a call in the agent's console.
    WebRtcOffer {
        agent: i64,
        contact: i64,
        sdp: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The browser's own media statistics for the call it is on.
    BrowserStats {
        agent: i64,
        contact: i64,
        stats: serde_json::Value,
    },
    WebRtcCandidate {
        agent: i64,
        contact: i64,
        candidate: String,
        ufrag: Option<String>,
    },
    /// Click-to-dial.
    Dial {
        agent: i64,
        number: String,
        customer_id: Option<i64>,
        sdp: Option<String>,
        reply: oneshot::Sender<Result<serde_json::Value, String>>,
    },
}

pub struct VoiceService {
    requests: mpsc::UnboundedSender<Request>,
    pub sip_addr: SocketAddr,
    credentials: SharedCredentials,
    store: Store,
    realm: String,
    sip: channel_sip::SipHandle,
}

impl VoiceService {
    /// Starts SIP, media and the call manager, when `sip.listen` is set.
    pub async fn start(
        store: Store,
        config: Arc<Config>,
        routing: Arc<Routing>,
        hub: HubHandle,
        push: Arc<AgentPush>,
    ) -> anyhow::Result<Option<Arc<VoiceService>>> {
        if config.sip.listen.trim().is_empty() {
            return Ok(None);
        }
        let stack = sip_stack_config(&config)?;
        let realm = stack.registrar.realm.clone();
        let trunk = if config.voice.outbound_trunk.is_empty() {
            stack.outbound_trunks.first().map(|t| t.name.clone())
        } else {
            Some(config.voice.outbound_trunk.clone())
        };
        let credentials = SharedCredentials::new();
        for a in store.sip_accounts().await? {
            credentials.set(
                a.username.clone(),
                AgentCredential {
                    agent_id: a.user_id.to_string(),
                    secret: Secret::Ha1Md5(a.ha1.clone()),
                },
            );
        }
        let (sip, sip_events) =
            channel_sip::SipEndpoint::start(stack, Arc::new(credentials.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot start SIP on {}: {e}", config.sip.listen))?;
        let sip_addr = sip.local_addr();
        let v = &config.voice;
        let bind: std::net::IpAddr = v
            .rtp_bind
            .parse()
            .map_err(|_| anyhow::anyhow!("voice.rtp_bind {:?} is not an IP address", v.rtp_bind))?;
        let advertise = if v.rtp_advertise.is_empty() {
            None
        } else {
            Some(v.rtp_advertise.parse().map_err(|_| {
                anyhow::anyhow!(
                    "voice.rtp_advertise {:?} is not an IP address",
                    v.rtp_advertise
                )
            })?)
        };
        let (media, media_events) =
            channel_media::MediaEngine::start(channel_media::EngineConfig {
                bind,
                advertise,
                rtp_ports: (v.rtp_port_min, v.rtp_port_max),
                ..channel_media::EngineConfig::default()
            })
            .map_err(|e| anyhow::anyhow!("cannot start the media engine: {e}"))?;
        let recordings = v.recordings(&config.data_dir);
        std::fs::create_dir_all(&recordings)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", recordings.display()))?;
        calls::finish_interrupted_recordings(&store).await;
        let ivr = calls::load_ivr(&routing);
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let manager = calls::Manager::new(calls::Deps {
            store: store.clone(),
            config: config.clone(),
            routing,
            hub: hub.clone(),
            push,
            sip: sip.clone(),
            media,
            prompts: v.prompts(),
            recordings,
            ivr,
            trunk,
        });
        hub.gate_voice().await;
        tokio::spawn(manager.run(sip_events, media_events, requests_rx, hub.subscribe()));
        tracing::info!(sip = %sip_addr, "voice channel is up");
        Ok(Some(Arc::new(VoiceService {
            requests,
            sip_addr,
            credentials,
            store,
            realm,
            sip,
        })))
    }

    /// A call-control request from an agent for the call of `contact`.
    pub async fn control(
        &self,
        agent: i64,
        contact: i64,
        op: CallOp,
    ) -> Result<serde_json::Value, String> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request::Control {
                agent,
                contact,
                op,
                reply,
            })
            .map_err(|_| "the voice channel has stopped".to_string())?;
        rx.await
            .map_err(|_| "the voice channel has stopped".to_string())?
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(make(reply)).ok()?;
        rx.await.ok()
    }

    /// Where the agent takes calls, and whether calls can reach them now.
    pub async fn set_endpoint(
        &self,
        agent: i64,
        endpoint: Option<Endpoint>,
        online: bool,
    ) -> Option<(Endpoint, bool)> {
        self.ask(|reply| Request::Endpoint {
            agent,
            endpoint,
            online,
            reply,
        })
        .await
    }

    pub async fn webrtc_offer(
        &self,
        agent: i64,
        contact: i64,
        sdp: String,
    ) -> Result<String, String> {
        self.ask(|reply| Request::WebRtcOffer {
            agent,
            contact,
            sdp,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("the voice channel has stopped".into()))
    }

    pub fn browser_stats(&self, agent: i64, contact: i64, stats: serde_json::Value) {
        let _ = self.requests.send(Request::BrowserStats {
            agent,
            contact,
            stats,
        });
    }

    pub fn webrtc_candidate(
        &self,
        agent: i64,
        contact: i64,
        candidate: String,
        ufrag: Option<String>,
    ) {
        let _ = self.requests.send(Request::WebRtcCandidate {
            agent,
            contact,
            candidate,
            ufrag,
        });
    }

    pub async fn dial(
        &self,
        agent: i64,
        number: String,
        customer_id: Option<i64>,
        sdp: Option<String>,
    ) -> Result<serde_json::Value, String> {
        self.ask(|reply| Request::Dial {
            agent,
            number,
            customer_id,
            sdp,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("the voice channel has stopped".into()))
    }

    /// Sets a user's desk-phone account; the registrar takes it at once.
    pub async fn set_account(
        &self,
        user_id: i64,
        username: &str,
        password: &str,
    ) -> crate::store::StoreResult<()> {
        let ha1 = channel_sip::digest::ha1(
            channel_sip::digest::Algorithm::Md5,
            username,
            &self.realm,
            password,
        );
        let now = crate::domain::now_ms();
        // An old username of this user stops working.
        for a in self.store.sip_accounts().await? {
            if a.user_id == user_id && a.username != username {
                self.credentials.remove(&a.username);
            }
        }
        self.store
            .set_sip_account(
                &crate::store::SipAccount {
                    user_id,
                    username: username.to_string(),
                    realm: self.realm.clone(),
                    ha1: ha1.clone(),
                },
                now,
            )
            .await?;
        self.credentials.set(
            username.to_string(),
            AgentCredential {
                agent_id: user_id.to_string(),
                secret: Secret::Ha1Md5(ha1),
            },
        );
        let _ = self.requests.send(Request::Accounts);
        Ok(())
    }

    pub async fn remove_account(&self, user_id: i64) -> crate::store::StoreResult<()> {
        for a in self.store.sip_accounts().await? {
            if a.user_id == user_id {
                self.credentials.remove(&a.username);
            }
        }
        self.store.delete_sip_account(user_id).await?;
        let _ = self.requests.send(Request::Accounts);
        Ok(())
    }

    pub fn registered(&self, username: &str) -> bool {
        !self.sip.registered_contacts(username).is_empty()
    }

    pub async fn stop(&self) {
        self.sip.shutdown().await;
    }
}
