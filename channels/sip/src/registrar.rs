//! The registrar for agents' desk phones, sans-IO: REGISTER requests in (already reduced to
//! the fields that matter), a decision out, binding events queued, expiry driven by `now`.

use crate::digest::{self, Algorithm, NonceCheck, NonceIssuer, Secret};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A desk phone's login as the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCredential {
    /// The hub's agent this phone belongs to.
    pub agent_id: String,
    pub secret: Secret,
}

/// Where the registrar (and the INVITE check for calls from desk phones) finds credentials.
/// The hub implements it over its user store, or uses [`SharedCredentials`].
pub trait CredentialStore: Send + Sync {
    fn lookup(&self, username: &str) -> Option<AgentCredential>;
}

/// A credential map the hub updates as agents are added or change their phone password.
#[derive(Clone, Default)]
pub struct SharedCredentials(Arc<RwLock<HashMap<String, AgentCredential>>>);

impl SharedCredentials {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, username: impl Into<String>, credential: AgentCredential) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(username.into(), credential);
    }

    pub fn remove(&self, username: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(username);
    }
}

impl CredentialStore for SharedCredentials {
    fn lookup(&self, username: &str) -> Option<AgentCredential> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(username)
            .cloned()
    }
}

/// Registrar policy (part of `SipConfig`, section `[registrar]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Digest realm shown to phones.
    pub realm: String,
    /// Shorter requests get `423 Interval Too Brief` (RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longer requests are granted this.
    pub max_expires: u32,
    /// Granted when the phone names no expiry.
    pub default_expires: u32,
    /// A nonce older than this is answered `401 ... stale=true`.
    pub nonce_ttl_secs: u64,
    /// More contacts than this per user: the oldest binding is replaced.
    pub max_contacts: usize,
    /// Also offer a SHA-256 challenge (first, RFC 8760), besides MD5.
    pub offer_sha256: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "contact-hub".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_ttl_secs: 300,
            max_contacts: 5,
            offer_sha256: false,
        }
    }
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactParam {
    pub uri: String,
    /// The contact's own `;expires=`.
    pub expires: Option<u32>,
}

/// The parts of a REGISTER the registrar decides on.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// User part of the To URI (the address of record).
    pub user: String,
    pub call_id: String,
    pub cseq: u32,
    pub contacts: Vec<ContactParam>,
    /// `Contact: *` (remove all, only valid with Expires: 0).
    pub wildcard: bool,
    /// The `Expires` header.
    pub expires: Option<u32>,
    /// The raw `Authorization` header value.
    pub authorization: Option<String>,
    /// Where the REGISTER came from (NAT-safe target for calls to the phone).
    pub source: SocketAddr,
    /// `udp`, `tcp` or `tls`: how to reach it.
    pub transport: Transport,
}

/// Transport a binding is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A registered contact of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub user: String,
    pub agent_id: String,
    pub contact: String,
    pub source: SocketAddr,
    pub transport: Transport,
    pub expires_at: Instant,
    /// When this binding was first made or last refreshed: newest first in lookups.
    pub updated_at: Instant,
    call_id: String,
    cseq: u32,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// `401` with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// `200` listing the user's current contacts with their remaining seconds.
    Ok(Vec<(String, u32)>),
    /// `423` with `Min-Expires`.
    IntervalTooBrief(u32),
    /// `403`: the credentials are right for someone else, or the user is unknown.
    Forbidden(&'static str),
    /// `400` with a reason.
    BadRequest(&'static str),
}

/// Binding changes the hub wants to know (which agents have a phone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    Registered {
        user: String,
        agent_id: String,
        contact: String,
    },
    /// The user's last contact is gone (un-REGISTER or expiry).
    Unregistered { user: String, agent_id: String },
}

pub struct Registrar {
    config: RegistrarConfig,
    epoch: Instant,
    nonces: NonceIssuer,
    bindings: HashMap<String, Vec<Binding>>,
    expiry: BTreeSet<(Instant, String, String)>,
    events: VecDeque<RegistrarEvent>,
}

impl Registrar {
    /// `epoch` anchors nonce times; `nonce_secret` must be random per process.
    pub fn new(config: RegistrarConfig, epoch: Instant, nonce_secret: &str) -> Self {
        let nonces = NonceIssuer::new(nonce_secret, Duration::from_secs(config.nonce_ttl_secs));
        Registrar {
            config,
            epoch,
            nonces,
            bindings: HashMap::new(),
            expiry: BTreeSet::new(),
            events: VecDeque::new(),
        }
    }

    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Challenge header values for a fresh nonce (also used for INVITEs from desk phones).
    pub fn challenge(&self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.nonces.issue(now.saturating_duration_since(self.epoch));
        let mut out = Vec::with_capacity(2);
        if self.config.offer_sha256 {
            out.push(digest::challenge(
                &self.config.realm,
                &nonce,
                Algorithm::Sha256,
                stale,
            ));
        }
        out.push(digest::challenge(
            &self.config.realm,
            &nonce,
            Algorithm::Md5,
            stale,
        ));
        out
    }

    /// Check a digest `Authorization` for `method`. `Ok(Some((username, credential)))` when it
    /// verifies; `Err(outcome)` says what to answer otherwise.
    pub fn authenticate(
        &self,
        now: Instant,
        method: &str,
        authorization: Option<&str>,
        store: &dyn CredentialStore,
    ) -> Result<(String, AgentCredential), RegisterOutcome> {
        let Some(value) = authorization else {
            return Err(RegisterOutcome::Challenge(self.challenge(now, false)));
        };
        let creds = digest::parse_credentials(value)
            .map_err(|_| RegisterOutcome::BadRequest("Malformed Authorization"))?;
        if creds.realm != self.config.realm {
            return Err(RegisterOutcome::Challenge(self.challenge(now, false)));
        }
        match self
            .nonces
            .check(&creds.nonce, now.saturating_duration_since(self.epoch))
        {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => return Err(RegisterOutcome::Challenge(self.challenge(now, true))),
            NonceCheck::Invalid => {
                return Err(RegisterOutcome::Challenge(self.challenge(now, false)))
            }
        }
        let Some(credential) = store.lookup(&creds.username) else {
            return Err(RegisterOutcome::Forbidden("Unknown user"));
        };
        match digest::verify(&creds, method, &credential.secret) {
            Ok(true) => Ok((creds.username, credential)),
            // Wrong password: challenge again (a phone with a typo keeps asking, like Asterisk).
            Ok(false) => Err(RegisterOutcome::Challenge(self.challenge(now, false))),
            Err(_) => Err(RegisterOutcome::BadRequest("Malformed Authorization")),
        }
    }

    /// Decide a REGISTER (RFC 3261 §10.3).
    pub fn handle_register(
        &mut self,
        now: Instant,
        req: &RegisterRequest,
        store: &dyn CredentialStore,
    ) -> RegisterOutcome {
        let (username, credential) =
            match self.authenticate(now, "REGISTER", req.authorization.as_deref(), store) {
                Ok(ok) => ok,
                Err(outcome) => return outcome,
            };
        if username != req.user {
            // Credentials of one phone must not register another user's address.
            return RegisterOutcome::Forbidden("Authentication user does not match To");
        }
        self.expire(now);
        if req.wildcard {
            if req.expires != Some(0) || !req.contacts.is_empty() {
                return RegisterOutcome::BadRequest("Contact * needs Expires: 0");
            }
            self.remove_user(&req.user);
            return RegisterOutcome::Ok(Vec::new());
        }
        for contact in &req.contacts {
            let expires = contact
                .expires
                .or(req.expires)
                .unwrap_or(self.config.default_expires);
            if expires != 0 && expires < self.config.min_expires {
                return RegisterOutcome::IntervalTooBrief(self.config.min_expires);
            }
        }
        for contact in &req.contacts {
            let expires = contact
                .expires
                .or(req.expires)
                .unwrap_or(self.config.default_expires)
                .min(self.config.max_expires);
            self.bind(now, req, &credential.agent_id, &contact.uri, expires);
        }
        RegisterOutcome::Ok(self.current(now, &req.user))
    }

    fn bind(&mut self, now: Instant, req: &RegisterRequest, agent_id: &str, uri: &str, secs: u32) {
        let list = self.bindings.entry(req.user.clone()).or_default();
        let existing = list.iter().position(|b| b.contact == uri);
        if let Some(i) = existing {
            // RFC 3261 §10.3 step 7: an older or repeated CSeq from the same Call-ID is ignored.
            if list[i].call_id == req.call_id && list[i].cseq >= req.cseq {
                return;
            }
            let old = list.remove(i);
            self.expiry
                .remove(&(old.expires_at, old.user.clone(), old.contact.clone()));
        }
        if secs == 0 {
            if existing.is_some() && list.is_empty() {
                self.bindings.remove(&req.user);
                self.events.push_back(RegistrarEvent::Unregistered {
                    user: req.user.clone(),
                    agent_id: agent_id.to_string(),
                });
            }
            return;
        }
        if list.len() >= self.config.max_contacts {
            // Replace the oldest: a phone that re-registers from a new port after a reboot
            // must not be locked out by its own stale bindings.
            if let Some((i, _)) = list.iter().enumerate().min_by_key(|(_, b)| b.updated_at) {
                let old = list.remove(i);
                self.expiry.remove(&(old.expires_at, old.user, old.contact));
            }
        }
        let expires_at = now + Duration::from_secs(u64::from(secs));
        list.push(Binding {
            user: req.user.clone(),
            agent_id: agent_id.to_string(),
            contact: uri.to_string(),
            source: req.source,
            transport: req.transport,
            expires_at,
            updated_at: now,
            call_id: req.call_id.clone(),
            cseq: req.cseq,
        });
        self.expiry
            .insert((expires_at, req.user.clone(), uri.to_string()));
        if existing.is_none() {
            self.events.push_back(RegistrarEvent::Registered {
                user: req.user.clone(),
                agent_id: agent_id.to_string(),
                contact: uri.to_string(),
            });
        }
    }

    fn remove_user(&mut self, user: &str) {
        if let Some(list) = self.bindings.remove(user) {
            for b in &list {
                self.expiry
                    .remove(&(b.expires_at, b.user.clone(), b.contact.clone()));
            }
            if let Some(b) = list.first() {
                self.events.push_back(RegistrarEvent::Unregistered {
                    user: user.to_string(),
                    agent_id: b.agent_id.clone(),
                });
            }
        }
    }

    fn current(&self, now: Instant, user: &str) -> Vec<(String, u32)> {
        self.bindings
            .get(user)
            .map(|list| {
                list.iter()
                    .map(|b| {
                        let left = b.expires_at.saturating_duration_since(now).as_secs();
                        (b.contact.clone(), left as u32)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drop the bindings whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, user, contact)) = self.expiry.first().cloned() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(list) = self.bindings.get_mut(&user) {
                let agent_id = list
                    .iter()
                    .find(|b| b.contact == contact)
                    .map(|b| b.agent_id.clone());
                list.retain(|b| b.contact != contact);
                if list.is_empty() {
                    self.bindings.remove(&user);
                    if let Some(agent_id) = agent_id {
                        self.events
                            .push_back(RegistrarEvent::Unregistered { user, agent_id });
                    }
                }
            }
        }
    }

    /// When `handle_timeout` next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _, _)| *at)
    }

    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }

    /// The user's live contacts, newest first.
    pub fn lookup(&self, user: &str, now: Instant) -> Vec<Binding> {
        let mut out: Vec<Binding> = self
            .bindings
            .get(user)
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        out.sort_by_key(|b| std::cmp::Reverse(b.updated_at));
        out
    }

    /// Number of users with at least one binding.
    pub fn registered_users(&self) -> usize {
        self.bindings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{ha1, Algorithm};

    fn store() -> SharedCredentials {
        let s = SharedCredentials::new();
        s.set(
            "1001",
            AgentCredential {
                agent_id: "agent-7".into(),
                secret: Secret::Password("pw1001".into()),
            },
        );
        s.set(
            "1002",
            AgentCredential {
                agent_id: "agent-8".into(),
                secret: Secret::Ha1Md5(ha1(Algorithm::Md5, "1002", "contact-hub", "pw1002")),
            },
        );
        s
    }

    fn nonce_of(challenge: &str) -> String {
        let start = challenge.find("nonce=\"").unwrap() + 7;
        let end = challenge[start..].find('"').unwrap() + start;
        challenge[start..end].to_string()
    }

    fn authorization(user: &str, password: &str, nonce: &str, alg: Algorithm) -> String {
        let realm = "contact-hub";
        let uri = "sip:hub.example";
        let h1 = ha1(alg, user, realm, password);
        let h2 = alg.hash(format!("REGISTER:{uri}").as_bytes());
        let response = alg.hash(format!("{h1}:{nonce}:00000001:c0ffee:auth:{h2}").as_bytes());
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"c0ffee\"",
            alg.name()
        )
    }

    fn request(
        user: &str,
        contact: &str,
        expires: Option<u32>,
        auth: Option<String>,
    ) -> RegisterRequest {
        RegisterRequest {
            user: user.into(),
            call_id: format!("reg-{user}"),
            cseq: 1,
            contacts: vec![ContactParam {
                uri: contact.into(),
                expires: None,
            }],
            wildcard: false,
            expires,
            authorization: auth,
            source: "127.0.0.1:5070".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    fn registered(
        reg: &mut Registrar,
        now: Instant,
        user: &str,
        pw: &str,
        contact: &str,
        expires: Option<u32>,
        cseq: u32,
    ) -> RegisterOutcome {
        let store = store();
        let mut req = request(user, contact, expires, None);
        req.cseq = cseq;
        let RegisterOutcome::Challenge(ch) = reg.handle_register(now, &req, &store) else {
            panic!("no challenge")
        };
        let nonce = nonce_of(&ch[0]);
        req.authorization = Some(authorization(user, pw, &nonce, Algorithm::Md5));
        req.cseq = cseq + 1;
        reg.handle_register(now, &req, &store)
    }

    #[test]
    fn challenge_then_register_then_expiry_on_simulated_clock() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default(), t0, "secret");
        let out = registered(
            &mut reg,
            t0,
            "1001",
            "pw1001",
            "sip:1001@10.0.0.5:5070",
            Some(120),
            1,
        );
        assert_eq!(
            out,
            RegisterOutcome::Ok(vec![("sip:1001@10.0.0.5:5070".into(), 120)])
        );
        assert_eq!(
            reg.poll_event(),
            Some(RegistrarEvent::Registered {
                user: "1001".into(),
                agent_id: "agent-7".into(),
                contact: "sip:1001@10.0.0.5:5070".into()
            })
        );
        assert_eq!(reg.poll_event(), None);
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        assert_eq!(reg.lookup("1001", t0 + Duration::from_secs(60)).len(), 1);
        reg.handle_timeout(t0 + Duration::from_secs(119));
        assert_eq!(reg.poll_event(), None);
        reg.handle_timeout(t0 + Duration::from_secs(120));
        assert_eq!(
            reg.poll_event(),
            Some(RegistrarEvent::Unregistered {
                user: "1001".into(),
                agent_id: "agent-7".into()
            })
        );
        assert!(reg.lookup("1001", t0 + Duration::from_secs(121)).is_empty());
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn ha1_secret_sha256_and_wrong_password() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default(), t0, "secret");
        let out = registered(&mut reg, t0, "1002", "pw1002", "sip:1002@h", None, 1);
        assert_eq!(out, RegisterOutcome::Ok(vec![("sip:1002@h".into(), 3600)]));
        // Wrong password: challenged again, nothing bound.
        let out = registered(&mut reg, t0, "1001", "nope", "sip:1001@h", None, 1);
        assert!(matches!(out, RegisterOutcome::Challenge(_)));
        assert!(reg.lookup("1001", t0).is_empty());
        // SHA-256 answers verify against a password secret.
        let store = store();
        let ch = reg.challenge(t0, false);
        let mut req = request("1001", "sip:1001@h", None, None);
        req.authorization = Some(authorization(
            "1001",
            "pw1001",
            &nonce_of(&ch[0]),
            Algorithm::Sha256,
        ));
        assert!(matches!(
            reg.handle_register(t0, &req, &store),
            RegisterOutcome::Ok(_)
        ));
    }

    #[test]
    fn stale_nonce_gets_stale_challenge() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default(), t0, "secret");
        let store = store();
        let nonce = nonce_of(&reg.challenge(t0, false)[0]);
        let mut req = request("1001", "sip:1001@h", None, None);
        req.authorization = Some(authorization("1001", "pw1001", &nonce, Algorithm::Md5));
        let later = t0 + Duration::from_secs(301);
        match reg.handle_register(later, &req, &store) {
            RegisterOutcome::Challenge(ch) => assert!(ch[0].contains("stale=true"), "{ch:?}"),
            other => panic!("{other:?}"),
        }
        // A nonce from another process is not stale, just invalid: no stale flag.
        let other = Registrar::new(RegistrarConfig::default(), t0, "other");
        let foreign = nonce_of(&other.challenge(t0, false)[0]);
        req.authorization = Some(authorization("1001", "pw1001", &foreign, Algorithm::Md5));
        match reg.handle_register(t0, &req, &store) {
            RegisterOutcome::Challenge(ch) => assert!(!ch[0].contains("stale")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn min_max_unregister_multiple_contacts_and_user_mismatch() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default(), t0, "secret");
        assert_eq!(
            registered(&mut reg, t0, "1001", "pw1001", "sip:a@h", Some(30), 1),
            RegisterOutcome::IntervalTooBrief(60)
        );
        // Over the max: capped.
        assert_eq!(
            registered(&mut reg, t0, "1001", "pw1001", "sip:a@h", Some(99999), 1),
            RegisterOutcome::Ok(vec![("sip:a@h".into(), 3600)])
        );
        let t1 = t0 + Duration::from_secs(10);
        match registered(&mut reg, t1, "1001", "pw1001", "sip:b@h", Some(600), 10) {
            RegisterOutcome::Ok(list) => assert_eq!(list.len(), 2),
            other => panic!("{other:?}"),
        }
        // Newest first.
        let found = reg.lookup("1001", t1);
        assert_eq!(found[0].contact, "sip:b@h");
        assert_eq!(found[1].contact, "sip:a@h");
        while reg.poll_event().is_some() {}
        // Remove one: still registered, no Unregistered event.
        registered(&mut reg, t1, "1001", "pw1001", "sip:a@h", Some(0), 20);
        assert_eq!(reg.poll_event(), None);
        // Remove the last.
        registered(&mut reg, t1, "1001", "pw1001", "sip:b@h", Some(0), 30);
        assert_eq!(
            reg.poll_event(),
            Some(RegistrarEvent::Unregistered {
                user: "1001".into(),
                agent_id: "agent-7".into()
            })
        );
        assert_eq!(reg.poll_timeout(), None);
        // 1002's (valid) credentials for 1001's address: forbidden.
        let store = store();
        let nonce = nonce_of(&reg.challenge(t1, false)[0]);
        let mut req = request("1001", "sip:x@h", None, None);
        req.authorization = Some(authorization("1002", "pw1002", &nonce, Algorithm::Md5));
        assert_eq!(
            reg.handle_register(t1, &req, &store),
            RegisterOutcome::Forbidden("Authentication user does not match To")
        );
    }

    #[test]
    fn wildcard_unregister_and_unknown_user() {
        let t0 = Instant::now();
        let mut reg = Registrar::new(RegistrarConfig::default(), t0, "secret");
        registered(&mut reg, t0, "1001", "pw1001", "sip:a@h", None, 1);
        registered(&mut reg, t0, "1001", "pw1001", "sip:b@h", None, 5);
        while reg.poll_event().is_some() {}
        let store = store();
        let nonce = nonce_of(&reg.challenge(t0, false)[0]);
        let mut req = request("1001", "*", Some(0), None);
        req.contacts.clear();
        req.wildcard = true;
        req.authorization = Some(authorization("1001", "pw1001", &nonce, Algorithm::Md5));
        assert_eq!(
            reg.handle_register(t0, &req, &store),
            RegisterOutcome::Ok(vec![])
        );
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrarEvent::Unregistered { .. })
        ));
        assert_eq!(reg.registered_users(), 0);
        let mut req = request("9999", "sip:z@h", None, None);
        req.authorization = Some(authorization("9999", "x", &nonce, Algorithm::Md5));
        assert_eq!(
            reg.handle_register(t0, &req, &store),
            RegisterOutcome::Forbidden("Unknown user")
        );
    }

    #[test]
    fn full_contact_list_replaces_oldest() {
        let t0 = Instant::now();
        let config = RegistrarConfig {
            max_contacts: 2,
            ..Default::default()
        };
        let mut reg = Registrar::new(config, t0, "s");
        for (i, c) in ["sip:a@h", "sip:b@h", "sip:c@h"].iter().enumerate() {
            let t = t0 + Duration::from_secs(i as u64);
            registered(&mut reg, t, "1001", "pw1001", c, None, 10 * i as u32 + 1);
        }
        let left: Vec<_> = reg
            .lookup("1001", t0 + Duration::from_secs(5))
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(left, vec!["sip:c@h".to_string(), "sip:b@h".to_string()]);
    }
}
