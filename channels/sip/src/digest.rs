//! HTTP digest authentication as SIP uses it (RFC 3261 §22, RFC 8760 for SHA-256): the
//! server side (challenges, nonce issue and check, response verification). Pure functions and
//! a nonce issuer that takes time as input.

use md5::Md5;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::time::Duration;

/// Digest algorithms the registrar understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "SHA-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// HA1 = H(username:realm:password).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash(format!("{username}:{realm}:{password}").as_bytes())
}

/// What a user's digest is checked against: the plain password (any algorithm) or a stored
/// MD5 HA1 (`md5(username:realm:password)`, what many PBX databases keep).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    Ha1Md5(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Secret::Password(_) => f.write_str("Password(..)"),
            Secret::Ha1Md5(_) => f.write_str("Ha1Md5(..)"),
        }
    }
}

/// The parameters of an `Authorization` / `Proxy-Authorization` digest header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub opaque: Option<String>,
}

/// Why an authorization header was refused before any hash was computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("not a Digest authorization")]
    NotDigest,
    #[error("digest parameter {0} missing")]
    Missing(&'static str),
    #[error("malformed digest parameters")]
    Malformed,
    #[error("unsupported digest algorithm")]
    UnsupportedAlgorithm,
}

/// Parse `Digest username="alice", realm="hub", ...`. Bounded work: at most 32 parameters.
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    let value = value.trim();
    let rest = match value.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("digest") => &value[6..],
        _ => return Err(DigestError::NotDigest),
    };
    let mut c = Credentials::default();
    let mut seen = (false, false, false, false, false);
    for (count, (k, v)) in split_params(rest)?.into_iter().enumerate() {
        if count >= 32 {
            return Err(DigestError::Malformed);
        }
        match k.to_ascii_lowercase().as_str() {
            "username" => {
                c.username = v;
                seen.0 = true
            }
            "realm" => {
                c.realm = v;
                seen.1 = true
            }
            "nonce" => {
                c.nonce = v;
                seen.2 = true
            }
            "uri" => {
                c.uri = v;
                seen.3 = true
            }
            "response" => {
                c.response = v;
                seen.4 = true
            }
            "algorithm" => c.algorithm = Some(v),
            "cnonce" => c.cnonce = Some(v),
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            "opaque" => c.opaque = Some(v),
            _ => {}
        }
    }
    let missing = [
        (seen.0, "username"),
        (seen.1, "realm"),
        (seen.2, "nonce"),
        (seen.3, "uri"),
        (seen.4, "response"),
    ];
    if let Some((_, name)) = missing.iter().find(|(s, _)| !s) {
        return Err(DigestError::Missing(name));
    }
    Ok(c)
}

/// `k=v` or `k="quoted, with commas"` pairs separated by commas.
fn split_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(DigestError::Malformed);
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => val.push(c),
                }
            }
            if !closed {
                return Err(DigestError::Malformed);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
            val = val.trim().to_string();
        }
        out.push((key.trim().to_string(), val));
    }
    Ok(out)
}

/// Check a digest response against the user's secret. `method` is the request method.
/// Returns the algorithm used when the response is right.
pub fn verify(c: &Credentials, method: &str, secret: &Secret) -> Result<bool, DigestError> {
    let alg = match &c.algorithm {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a).ok_or(DigestError::UnsupportedAlgorithm)?,
    };
    let ha1 = match (secret, alg) {
        (Secret::Password(p), alg) => ha1(alg, &c.username, &c.realm, p),
        (Secret::Ha1Md5(h), Algorithm::Md5) => h.to_ascii_lowercase(),
        // A stored MD5 HA1 cannot answer a SHA-256 challenge.
        (Secret::Ha1Md5(_), Algorithm::Sha256) => return Ok(false),
    };
    let ha2 = alg.hash(format!("{method}:{}", c.uri).as_bytes());
    let expected = match c.qop.as_deref() {
        Some(qop) if qop.eq_ignore_ascii_case("auth") => {
            let nc = c.nc.as_deref().ok_or(DigestError::Missing("nc"))?;
            let cnonce = c.cnonce.as_deref().ok_or(DigestError::Missing("cnonce"))?;
            alg.hash(format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", c.nonce).as_bytes())
        }
        Some(_) => return Err(DigestError::Malformed),
        None => alg.hash(format!("{ha1}:{}:{ha2}", c.nonce).as_bytes()),
    };
    Ok(constant_time_eq(
        expected.as_bytes(),
        c.response.to_ascii_lowercase().as_bytes(),
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of one `WWW-Authenticate` / `Proxy-Authenticate` header.
pub fn challenge(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
        alg.name()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// Issues nonces that carry their own issue time and a keyed hash, so the server keeps no
/// per-nonce state: `<seconds-hex>.<H(secret:seconds)[..24]>`.
#[derive(Clone)]
pub struct NonceIssuer {
    secret: String,
    ttl: Duration,
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    /// Ours but too old: challenge again with `stale=true` (the phone retries silently).
    Stale,
    /// Not issued by us (or tampered with).
    Invalid,
}

impl NonceIssuer {
    /// `secret` must be random per process (the driver draws it); `ttl` bounds nonce reuse.
    pub fn new(secret: impl Into<String>, ttl: Duration) -> Self {
        NonceIssuer {
            secret: secret.into(),
            ttl,
        }
    }

    /// `now` is time since the owner's epoch.
    pub fn issue(&self, now: Duration) -> String {
        let secs = now.as_secs();
        format!("{secs:x}.{}", self.tag(secs))
    }

    pub fn check(&self, nonce: &str, now: Duration) -> NonceCheck {
        let Some((secs_hex, tag)) = nonce.split_once('.') else {
            return NonceCheck::Invalid;
        };
        let Ok(secs) = u64::from_str_radix(secs_hex, 16) else {
            return NonceCheck::Invalid;
        };
        if secs_hex.len() > 16 || !constant_time_eq(tag.as_bytes(), self.tag(secs).as_bytes()) {
            return NonceCheck::Invalid;
        }
        if secs > now.as_secs() {
            return NonceCheck::Invalid;
        }
        if now.as_secs() - secs > self.ttl.as_secs() {
            NonceCheck::Stale
        } else {
            NonceCheck::Fresh
        }
    }

    fn tag(&self, secs: u64) -> String {
        let mut h = Algorithm::Sha256.hash(format!("{}:{secs}", self.secret).as_bytes());
        h.truncate(24);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5 example (qop=auth, MD5).
    #[test]
    fn rfc2617_example_verifies() {
        let c = parse_credentials(
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(c.username, "Mufasa");
        let secret = Secret::Password("Circle Of Life".into());
        assert!(verify(&c, "GET", &secret).unwrap());
        assert!(!verify(&c, "POST", &secret).unwrap());
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&c, "GET", &Secret::Ha1Md5(ha1)).unwrap());
        assert!(!verify(&c, "GET", &Secret::Password("wrong".into())).unwrap());
    }

    #[test]
    fn sha256_and_no_qop() {
        let realm = "hub";
        let nonce = "abc";
        let h1 = ha1(Algorithm::Sha256, "1001", realm, "pw");
        let h2 = Algorithm::Sha256.hash(b"REGISTER:sip:hub");
        let resp = Algorithm::Sha256.hash(format!("{h1}:{nonce}:{h2}").as_bytes());
        let c = Credentials {
            username: "1001".into(),
            realm: realm.into(),
            nonce: nonce.into(),
            uri: "sip:hub".into(),
            response: resp,
            algorithm: Some("SHA-256".into()),
            ..Default::default()
        };
        assert!(verify(&c, "REGISTER", &Secret::Password("pw".into())).unwrap());
        // An MD5 HA1 cannot answer SHA-256.
        assert!(!verify(&c, "REGISTER", &Secret::Ha1Md5("00".into())).unwrap());
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(parse_credentials("Basic abc"), Err(DigestError::NotDigest));
        assert_eq!(
            parse_credentials(r#"Digest username="a", realm="b""#),
            Err(DigestError::Missing("nonce"))
        );
        assert_eq!(
            parse_credentials(r#"Digest username="a"#),
            Err(DigestError::Malformed)
        );
        assert!(parse_credentials("Digest ,,,").is_err());
        assert!(parse_credentials("").is_err());
        assert!(parse_credentials("Dige").is_err());
    }

    #[test]
    fn nonce_fresh_stale_invalid() {
        let issuer = NonceIssuer::new("s3cret", Duration::from_secs(300));
        let n = issuer.issue(Duration::from_secs(1000));
        assert_eq!(
            issuer.check(&n, Duration::from_secs(1100)),
            NonceCheck::Fresh
        );
        assert_eq!(
            issuer.check(&n, Duration::from_secs(1301)),
            NonceCheck::Stale
        );
        let other = NonceIssuer::new("other", Duration::from_secs(300));
        assert_eq!(
            other.check(&n, Duration::from_secs(1100)),
            NonceCheck::Invalid
        );
        assert_eq!(
            issuer.check("zz.abc", Duration::from_secs(1)),
            NonceCheck::Invalid
        );
        assert_eq!(
            issuer.check("", Duration::from_secs(1)),
            NonceCheck::Invalid
        );
        // Issued "in the future": forged.
        let future = issuer.issue(Duration::from_secs(5000));
        assert_eq!(
            issuer.check(&future, Duration::from_secs(10)),
            NonceCheck::Invalid
        );
    }
}
