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
    if let Some(e164) = plain_e164(cleaned, region) {
        return Ok(e164);
    }
    let number =
        phonenumber::parse(region, cleaned).map_err(|_| IdentityError::BadPhone(raw.into()))?;
    let e164 = e164(&number);
    // The stored form must read back as itself; junk such as "+86 0138000" does not (the
    // crate drops the trunk 0 on the second pass), and would never match a caller again.
    let stable = reads_back_unchanged(number.code().value(), &number.national().to_string())
        || phonenumber::parse(None, &e164)
            .map(|n| self::e164(&n) == e164)
            .unwrap_or(false);
    if e164.len() < 6 || !stable {
        return Err(IdentityError::BadPhone(raw.into()));
    }
    Ok(e164)
}

/// The E.164 form, `+{country code}{national number}`: what the crate's `Mode::E164`
/// formatting writes, without its formatter, which first searches the country's national
/// format patterns (regexes) for every mode, E.164 included. That search was two thirds of the
/// cost of a parse-and-format (benches/csv_import.rs, BENCHMARKS.md).
fn e164(number: &phonenumber::PhoneNumber) -> String {
    format!("+{}{}", number.code().value(), number.national())
}

/// The E.164 form of a number written as plain digits (spaces, dashes, dots and brackets
/// between them), with `+` and its country code or in `region` without a trunk prefix, when
/// the crate's parser would certainly return that number unchanged: `None` sends it through
/// the parser. The parser (nom and regexes) was most of an import row's parsing time.
///
/// The parser (parser/mod.rs, helper.rs `country_code`) takes the code after `+` as the
/// first 1–3 digits that are a country code; a national number keeps the region's code unless
/// it starts with the region's international prefix or that code. It then changes the
/// national number only where [`reads_back_unchanged`] says it may, keeps leading zeros (left
/// to the parser here), and refuses national numbers outside 2–17 digits.
fn plain_e164(cleaned: &str, region: Option<country::Id>) -> Option<String> {
    let (plus, rest) = match cleaned.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, cleaned),
    };
    if !rest.ends_with(|c: char| c.is_ascii_digit()) {
        return None; // the parser reads trailing punctuation its own way
    }
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' => {}
            // After `+` the crate's RFC 3966 reading takes these its own way (it refuses
            // `+4158836-11`, and reads `+86138-0013-8000` as a malformed integer).
            '-' | '.' | '(' | ')' if !plus => {}
            _ => return None,
        }
    }
    let db = &*phonenumber::metadata::DATABASE;
    let (code, national) = if plus {
        if digits.starts_with('0') {
            return None; // no country code starts with 0: the parser refuses it
        }
        (1..=3.min(digits.len())).find_map(|len| {
            let code: u16 = digits[..len].parse().ok()?;
            db.by_code(&code).map(|_| (code, &digits[len..]))
        })?
    } else {
        let meta = db.by_id(region?.as_ref())?;
        let code = meta.country_code();
        let idd_first = meta
            .international_prefix()
            .and_then(|re| re.find(&digits))
            .is_some_and(|m| m.start() == 0);
        if idd_first || digits.starts_with(&code.to_string()) {
            return None;
        }
        (code, digits.as_str())
    };
    let plain = !national.starts_with('0')
        && (2..=17).contains(&national.len())
        && reads_back_unchanged(code, national);
    plain.then(|| format!("+{code}{national}"))
}

/// True when `+{code}{national}` certainly parses back to itself, which spares the second
/// parse for nearly every number (false: parse it again to know).
///
/// Reading `+{code}{national}` (digits only), the crate finds `code` again (country codes are
/// prefix-free; a test checks its table), picks one of the code's regions, and changes the
/// national number only when that region's national prefix (e.g. CN's trunk `0`) starts it or
/// its `national_prefix_for_parsing` pattern matches at its start (parser/mod.rs, helper.rs
/// `national_number`). Neither holding for any region of the code, nothing changes.
fn reads_back_unchanged(code: u16, national: &str) -> bool {
    let Some(regions) = phonenumber::metadata::DATABASE.by_code(&code) else {
        return false;
    };
    regions.iter().all(|meta| {
        !(meta
            .national_prefix()
            .is_some_and(|p| national.starts_with(p))
            || meta
                .national_prefix_for_parsing()
                .and_then(|re| re.find(national))
                .is_some_and(|m| m.start() == 0))
    })
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
    fn international_numbers_with_separators_but_no_spaces() {
        for (raw, region, want) in [
            ("+86-138-0013-8000", "CN", "+8613800138000"),
            ("+86-10-1234-5678", "US", "+861012345678"),
            ("+1-415-555-0100", "CN", "+14155550100"),
            ("+886-2-2345-6789", "CN", "+886223456789"),
            ("+86.138.0013.8000", "CN", "+8613800138000"),
            ("+86(10)1234-5678", "CN", "+861012345678"),
            ("+44 (0)20 7946 0958", "CN", "+442079460958"),
            ("+852-2345-6789", "CN", "+85223456789"),
        ] {
            assert_eq!(normalize_phone(raw, region).as_deref(), Ok(want), "{raw}");
        }
    }

    /// `normalize_phone` as it was with the crate's `Mode::E164` formatter, for comparison.
    fn normalize_phone_with_formatter(
        raw: &str,
        default_region: &str,
    ) -> Result<String, IdentityError> {
        let bad = || IdentityError::BadPhone(raw.into());
        let region = region(default_region)
            .ok_or_else(|| IdentityError::BadRegion(default_region.into()))?;
        let cleaned = raw.trim();
        let cleaned = cleaned
            .strip_prefix("tel:")
            .or_else(|| cleaned.strip_prefix("TEL:"))
            .unwrap_or(cleaned);
        let cleaned = cleaned.split(';').next().unwrap_or(cleaned).trim();
        let digits = cleaned.chars().filter(|c| c.is_ascii_digit()).count();
        if !(5..=18).contains(&digits) {
            return Err(bad());
        }
        let region = (!cleaned.starts_with('+')).then_some(region);
        let number = phonenumber::parse(region, cleaned).map_err(|_| bad())?;
        let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
        let stable = phonenumber::parse(None, &e164)
            .map(|n| n.format().mode(phonenumber::Mode::E164).to_string() == e164)
            .unwrap_or(false);
        if e164.len() < 6 || !stable {
            return Err(bad());
        }
        Ok(e164)
    }

    #[test]
    fn e164_without_the_formatter_is_what_the_formatter_wrote() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let regions = [
            "CN", "TW", "HK", "MO", "SG", "US", "CA", "GB", "IT", "DE", "FR", "JP", "KR", "AU",
            "RU", "KZ", "BR", "IN",
        ];
        let prefixes = [
            "", "", "", "+", "00", "0", "+86 ", "0086", "+86 0", "+886 ", "+852 ", "+1 ", "+39 0",
            "+44 0", "+7 ", "tel:+", "011", "(0",
        ];
        let separators = ["", "", "", " ", "-", ".", ") "];
        let mut rng = StdRng::seed_from_u64(20261201);
        let (mut valid, mut decided_at_once, mut parsed_again, mut plain) = (0, 0, 0, 0);
        for i in 0..6_000 {
            let region = regions[rng.random_range(0..regions.len())];
            let mut raw = prefixes[rng.random_range(0..prefixes.len())].to_string();
            // Every third one a plausible mobile or landline head, the rest any digits.
            if i % 3 == 0 {
                raw.push_str(["13", "15", "18", "09", "2", "10", "415", "7", "3"][i % 9]);
            }
            for _ in 0..rng.random_range(3..14) {
                raw.push(char::from(b'0' + rng.random_range(0..10u8)));
                if rng.random_bool(0.15) {
                    raw.push_str(separators[rng.random_range(0..separators.len())]);
                }
            }
            let now = normalize_phone(&raw, region);
            assert_eq!(
                now,
                normalize_phone_with_formatter(&raw, region),
                "{raw:?} in {region}"
            );
            // Which way the read-back check went, so both ways are known to be compared.
            let first = (!raw.trim_start().starts_with('+'))
                .then(|| super::region(region))
                .flatten();
            if let Ok(n) = phonenumber::parse(first, raw.trim_start_matches("tel:")) {
                if reads_back_unchanged(n.code().value(), &n.national().to_string()) {
                    decided_at_once += 1;
                } else {
                    parsed_again += 1;
                }
            }
            valid += now.is_ok() as u32;
            let cleaned = raw.trim().trim_start_matches("tel:");
            let first = (!cleaned.starts_with('+'))
                .then(|| super::region(region))
                .flatten();
            plain += plain_e164(cleaned, first).is_some() as u32;
        }
        assert!(valid > 1_500, "only {valid} of 6,000 numbers were valid");
        // Both ways are compared: the parser's and the plain digits'.
        assert!(
            plain > 600 && valid - plain > 600,
            "{plain} of {valid} valid numbers were plain"
        );
        assert!(
            decided_at_once > 500 && parsed_again > 50,
            "read-back decided at once {decided_at_once}, by parsing again {parsed_again}"
        );
    }

    #[test]
    fn country_codes_are_prefix_free_and_listed_with_their_regions() {
        use phonenumber::metadata::DATABASE;
        let codes: std::collections::BTreeSet<u16> =
            DATABASE.iter().map(|m| m.country_code()).collect();
        assert!(codes.len() > 200, "{} codes", codes.len());
        for &code in &codes {
            let digits = code.to_string();
            for len in 1..digits.len() {
                let head: u16 = digits[..len].parse().unwrap();
                assert!(!codes.contains(&head), "{head} is a prefix of {code}");
            }
            // reads_back_unchanged looks at every region of a code: the parser picks one.
            let of_code: Vec<&str> = DATABASE
                .by_code(&code)
                .unwrap()
                .iter()
                .map(|m| m.id())
                .collect();
            for region in DATABASE.region(&code).unwrap() {
                assert!(
                    of_code.contains(&region),
                    "{region} missing from code {code}"
                );
            }
        }
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
