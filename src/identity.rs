//! Customer identities: how phone numbers, fax numbers and emails are normalized so that a caller
//! number written in any local format finds its customer.

use phonenumber::country;

/// Parses an ISO 3166 alpha-2 region code (e.g. `CN`, `TW`).
pub fn region(code: &str) -> Option<country::Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not a phone number: {0:?}")]
    BadPhone(String),
    #[error("not an email address: {0:?}")]
    BadEmail(String),
    #[error("unknown region code {0:?}")]
    BadRegion(String),
}

/// Normalizes a phone or fax number to E.164 (`+8613800138000`). Numbers without a country
/// code are read in `default_region`; `tel:` URIs and SIP-style `+86 138-0013-8000` also work.
pub fn normalize_phone(raw: &str, default_region: &str) -> Result<String, IdentityError> {
    let region =
        region(default_region).ok_or_else(|| IdentityError::BadRegion(default_region.into()))?;
    // `tel:` URIs are unwrapped here: the crate's RFC 3966 path misreads some (e.g. it drops
    // the 1 of +86 138…), and parameters such as `;phone-context` carry no digits we need.
    let cleaned = raw.trim();
    let cleaned = cleaned
        .strip_prefix("tel:")
        .or_else(|| cleaned.strip_prefix("TEL:"))
        .unwrap_or(cleaned);
    let cleaned = cleaned.split(';').next().unwrap_or(cleaned).trim();
    let digits = cleaned.chars().filter(|c| c.is_ascii_digit()).count();
    // Short codes and junk are never identities; the longest E.164 number has 15 digits, and we
    // leave room for an international prefix such as 00 or 011.
    if !(5..=18).contains(&digits) {
        return Err(IdentityError::BadPhone(raw.into()));
    }
    // A number with its country code is parsed without a region: with one, the crate applies
    // that region's national prefix to it (region US turned +86 138… into +86 38…).
    let region = if cleaned.starts_with('+') {
        None
    } else {
        Some(region)
    };
    let number =
        phonenumber::parse(region, cleaned).map_err(|_| IdentityError::BadPhone(raw.into()))?;
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // The stored form must read back as itself; junk such as "+86 0138000" does not (the
    // crate drops the trunk 0 on the second pass), and would never match a caller again.
    let stable = phonenumber::parse(None, &e164)
        .map(|n| n.format().mode(phonenumber::Mode::E164).to_string() == e164)
        .unwrap_or(false);
    if e164.len() < 6 || !stable {
        return Err(IdentityError::BadPhone(raw.into()));
    }
    Ok(e164)
}

/// Lower-cases and checks an email address (`Wang.XM@Example.CN` → `wang.xm@example.cn`).
pub fn normalize_email(raw: &str) -> Result<String, IdentityError> {
    let e = raw.trim().trim_start_matches("mailto:").to_lowercase();
    let valid = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && e.len() <= 254
        }
        None => false,
    };
    if valid {
        Ok(e)
    } else {
        Err(IdentityError::BadEmail(raw.into()))
    }
}

/// Folds a name for case-insensitive substring search (CJK is unaffected by case folding).
pub fn search_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_formats_normalize_to_e164() {
        assert_eq!(
            normalize_phone("010-1234 5678", "CN").unwrap(),
            "+861012345678"
        );
        assert_eq!(
            normalize_phone("+86 138 0013 8000", "CN").unwrap(),
            "+8613800138000"
        );
        assert_eq!(
            normalize_phone("138-0013-8000", "CN").unwrap(),
            "+8613800138000"
        );
        assert_eq!(
            normalize_phone("(02) 2345-6789", "TW").unwrap(),
            "+886223456789"
        );
        assert_eq!(
            normalize_phone("+886 2 2345 6789", "CN").unwrap(),
            "+886223456789"
        );
        assert_eq!(
            normalize_phone("tel:+8613800138000", "US").unwrap(),
            "+8613800138000"
        );
        assert_eq!(
            normalize_phone("+8613800138000", "US").unwrap(),
            "+8613800138000"
        );
        assert_eq!(
            normalize_phone("+1 415 555 0100", "CN").unwrap(),
            "+14155550100"
        );
        assert_eq!(
            normalize_phone("(415) 555-0100", "US").unwrap(),
            "+14155550100"
        );
    }

    #[test]
    fn junk_is_not_a_phone() {
        assert!(normalize_phone("hello", "CN").is_err());
        assert!(normalize_phone("110", "CN").is_err());
        assert!(normalize_phone("", "CN").is_err());
        assert!(normalize_phone("1234567", "ZZ").is_err());
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            normalize_email(" Wang.XM@Example.CN ").unwrap(),
            "wang.xm@example.cn"
        );
        assert!(normalize_email("no-at-sign").is_err());
        assert!(normalize_email("a@b").is_err());
        assert!(normalize_email("a b@c.cn").is_err());
    }
}
