//! Configuration: `contact-hub.toml` (or `--config FILE`), every key overridable by an env var.
//!
//! The env name of a key is `HUB_` + its dotted path upper-cased with `.` → `_`
//! (`archive.default_region` → `HUB_ARCHIVE_DEFAULT_REGION`); top-level keys keep the short
//! names of ARCHITECTURE §5 (`HUB_DATA_DIR`, `HUB_HTTP_LISTEN`, ...) and `DATABASE_URL`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the embedded SQLite database and stored files.
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL; empty means SQLite under `data_dir`.
    pub database_url: String,
    pub http: HttpConfig,
    pub sip: SipConfig,
    pub smtp: SmtpConfig,
    pub auth: AuthConfig,
    pub archive: ArchiveConfig,
    pub agent: AgentConfig,
    pub routing: RoutingConfig,
    pub chat: crate::chat::ChatConfig,
    pub email: crate::email::EmailConfig,
    pub voice: crate::voice::VoiceConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Directory of the routing rules (queues.toml, routing.toml); empty means
    /// `<data_dir>/routing-rules`, created from the shipped sample on first start.
    pub rules_dir: String,
    /// How often the rules directory is checked for changes (hot reload), in milliseconds.
    pub reload_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            rules_dir: String::new(),
            reload_ms: 1000,
        }
    }
}

impl RoutingConfig {
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        if self.rules_dir.is_empty() {
            data_dir.join("routing-rules")
        } else {
            PathBuf::from(&self.rules_dir)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Mark the session cookie `Secure` (set when served over HTTPS, e.g. behind a proxy;
    /// always on with `tls_cert`).
    pub cookie_secure: bool,
    /// PEM certificate chain and private key: serve HTTPS (and WSS) instead of HTTP. A
    /// self-signed pair is fine for development (`openssl req -x509 …`, README).
    pub tls_cert: String,
    pub tls_key: String,
    /// Bearer token a Prometheus scraper may use for `/metrics`; empty: admin/supervisor login only.
    pub metrics_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP address for trunks and desk phones; empty = no voice channel.
    pub listen: String,
    /// The SIP stack's TOML (inbound and outbound trunks, registrar, TLS; see
    /// channels/sip/README.md); empty = `<data_dir>/sip.toml` if it exists.
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Where mail relayed by the company's MTA arrives; empty = no SMTP listener.
    pub listen: String,
    /// PEM certificate and key: STARTTLS is offered when both are set.
    pub tls_cert: String,
    pub tls_key: String,
    /// Speak LMTP instead of SMTP (one reply per recipient).
    pub lmtp: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub session_hours: i64,
    /// Failed logins allowed before the account is locked for a while.
    pub max_failed_logins: i64,
    /// First lock-out; each further failure doubles it, up to `lockout_max_secs`.
    pub lockout_base_secs: i64,
    pub lockout_max_secs: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Region for phone numbers written without a country code (ISO 3166 alpha-2, e.g. CN).
    pub default_region: String,
    /// Allowed customer tiers, most valuable first.
    pub tiers: Vec<String>,
    pub default_tier: String,
    /// Documents expiring within this many days raise a warning on the screen-pop.
    pub expiring_soon_days: i64,
    /// A document valid for longer than this is suspicious (e.g. a licence "valid until 9999-12-31").
    pub max_document_validity_years: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Seconds between heartbeats on the agent and supervisor sockets.
    pub heartbeat_secs: u64,
    /// An agent whose socket dropped is logged out if it does not come back within this time.
    pub disconnect_grace_secs: i64,
    /// Disposition codes an agent picks from at wrap-up.
    pub dispositions: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database_url: String::new(),
            http: HttpConfig::default(),
            sip: SipConfig::default(),
            smtp: SmtpConfig::default(),
            auth: AuthConfig::default(),
            archive: ArchiveConfig::default(),
            agent: AgentConfig::default(),
            routing: RoutingConfig::default(),
            chat: crate::chat::ChatConfig::default(),
            email: crate::email::EmailConfig::default(),
            voice: crate::voice::VoiceConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 1024 * 1024,
            cookie_secure: false,
            metrics_token: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "0.0.0.0:5060".into(),
            file: String::new(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: "127.0.0.1:2525".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            lmtp: false,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_hours: 12,
            max_failed_logins: 5,
            lockout_base_secs: 30,
            lockout_max_secs: 900,
        }
    }
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            default_region: "CN".into(),
            tiers: vec!["vip".into(), "important".into(), "ordinary".into()],
            default_tier: "ordinary".into(),
            expiring_soon_days: 30,
            max_document_validity_years: 30,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            heartbeat_secs: 15,
            disconnect_grace_secs: 60,
            dispositions: [
                "resolved",
                "follow_up",
                "escalated",
                "callback_requested",
                "no_action",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Env names that do not follow the `HUB_` + dotted-path rule (ARCHITECTURE §5).
const ENV_ALIASES: &[(&str, &str)] = &[("DATABASE_URL", "database_url")];

impl Config {
    /// Loads `path` if given (it must exist), else `./contact-hub.toml` if present, else defaults;
    /// then applies env overrides and validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let text = match path {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?,
            ),
            None => std::fs::read_to_string("contact-hub.toml").ok(),
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_parts(text.as_deref(), &env)
    }

    /// Builds a config from file text and an environment (testable without touching the process env).
    pub fn from_parts(text: Option<&str>, env: &[(String, String)]) -> anyhow::Result<Config> {
        let mut value: toml::Table = match text {
            Some(t) => toml::from_str(t).context("invalid config file")?,
            None => toml::Table::new(),
        };
        let defaults = toml::Table::try_from(Config::default())?;
        let mut keys = Vec::new();
        flatten_keys(&defaults, "", &mut keys);
        for (dotted, default) in keys {
            let env_name = format!("HUB_{}", dotted.replace('.', "_").to_uppercase());
            let alias = ENV_ALIASES
                .iter()
                .find(|(_, k)| *k == dotted)
                .map(|(e, _)| *e);
            let found = env
                .iter()
                .find(|(k, _)| *k == env_name || Some(k.as_str()) == alias);
            if let Some((name, raw)) = found {
                let parsed = parse_env_value(raw, &default)
                    .with_context(|| format!("invalid value in env var {name}"))?;
                set_dotted(&mut value, &dotted, parsed);
            }
        }
        let config: Config = toml::Value::Table(value)
            .try_into()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !self.archive.tiers.contains(&self.archive.default_tier) {
            bail!(
                "archive.default_tier {:?} is not one of archive.tiers {:?}",
                self.archive.default_tier,
                self.archive.tiers
            );
        }
        if crate::identity::region(&self.archive.default_region).is_none() {
            bail!(
                "archive.default_region {:?} is not a known region code (e.g. CN, TW, HK, US)",
                self.archive.default_region
            );
        }
        if self.auth.session_hours <= 0 || self.auth.max_failed_logins <= 0 {
            bail!("auth.session_hours and auth.max_failed_logins must be positive");
        }
        Ok(())
    }

    /// The database URL in use: `database_url`, else SQLite in `data_dir`.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("contact-hub.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }
}

fn flatten_keys(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let dotted = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten_keys(t, &dotted, out),
            other => out.push((dotted, other.clone())),
        }
    }
}

/// Env values are strings; give them the type of the default (numbers, booleans, lists).
fn parse_env_value(raw: &str, default: &toml::Value) -> anyhow::Result<toml::Value> {
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(raw.trim().parse()?),
        toml::Value::Float(_) => toml::Value::Float(raw.trim().parse()?),
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            other => bail!("expected true/false, got {other:?}"),
        }),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    })
}

fn set_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap_or(dotted);
    let mut cur = table;
    for p in parts {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return,
        };
    }
    cur.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_fixed_interface() {
        let c = Config::from_parts(None, &[]).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert_eq!(c.sip.listen, "0.0.0.0:5060");
        assert_eq!(c.smtp.listen, "127.0.0.1:2525");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.effective_database_url().starts_with("sqlite://./data/"));
    }

    #[test]
    fn env_overrides_file_and_types_follow_defaults() {
        let file = "data_dir = \"/srv/hub\"\n[http]\nlisten = \"0.0.0.0:9000\"\n";
        let c = Config::from_parts(
            Some(file),
            &env(&[
                ("HUB_HTTP_LISTEN", "127.0.0.1:1234"),
                ("HUB_AUTH_SESSION_HOURS", "2"),
                ("HUB_HTTP_COOKIE_SECURE", "true"),
                ("HUB_ARCHIVE_TIERS", "gold, silver"),
                ("HUB_ARCHIVE_DEFAULT_TIER", "silver"),
                ("DATABASE_URL", "postgres://u@localhost/hub"),
            ]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/hub"));
        assert_eq!(c.http.listen, "127.0.0.1:1234");
        assert_eq!(c.auth.session_hours, 2);
        assert!(c.http.cookie_secure);
        assert_eq!(c.archive.tiers, vec!["gold", "silver"]);
        assert_eq!(c.effective_database_url(), "postgres://u@localhost/hub");
    }

    #[test]
    fn bad_config_is_refused_with_a_reason() {
        let err = Config::from_parts(Some("[http]\nlisen = \"x\"\n"), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        let err =
            Config::from_parts(None, &env(&[("HUB_AUTH_SESSION_HOURS", "many")])).unwrap_err();
        assert!(format!("{err:#}").contains("HUB_AUTH_SESSION_HOURS"));
        let err =
            Config::from_parts(None, &env(&[("HUB_ARCHIVE_DEFAULT_REGION", "XX")])).unwrap_err();
        assert!(format!("{err:#}").contains("default_region"));
    }
}
