//! Seeded random-input runs over the parsers that take outside input: the CSV import, phone and
//! email normalization, customer validation. They must answer (Ok or a reason), never panic.

use contact_hub::archive::normalize_customer;
use contact_hub::config::ArchiveConfig;
use contact_hub::domain::CustomerInput;
use contact_hub::identity::{normalize_email, normalize_phone};
use contact_hub::import;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PIECES: &[&str] = &[
    "+",
    "86",
    "886",
    "00",
    "(",
    ")",
    "-",
    " ",
    "0",
    "1",
    "138",
    "0013",
    "8000",
    "@",
    ".",
    "cn",
    "王",
    "陳",
    "\u{3000}",
    "tel:",
    ";",
    ",",
    "\"",
    "\n",
    "\r\n",
    "|",
    "\u{feff}",
    "\0",
    "9999",
    "-12-31",
    "yes",
    "maybe",
    "vip",
    "ｘ",
    "１３８",
    "\u{202e}",
    "﹫",
    "%",
    "_",
    "\\",
];

fn random_text(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..24);
    let mut s = String::new();
    for _ in 0..n {
        if rng.random_bool(0.2) {
            s.push(char::from_u32(rng.random_range(0..0x3_0000)).unwrap_or('?'));
        } else {
            s.push_str(PIECES[rng.random_range(0..PIECES.len())]);
        }
    }
    s
}

#[test]
fn identity_normalizers_never_panic() {
    let mut rng = StdRng::seed_from_u64(20261123);
    let regions = ["CN", "TW", "HK", "US", "GB", "XX", ""];
    for _ in 0..20_000 {
        let s = random_text(&mut rng);
        let region = regions[rng.random_range(0..regions.len())];
        if let Ok(e164) = normalize_phone(&s, region) {
            assert!(
                e164.starts_with('+') && e164[1..].chars().all(|c| c.is_ascii_digit()),
                "{s:?} -> {e164}"
            );
            // Normalizing a normalized number changes nothing.
            assert_eq!(
                normalize_phone(&e164, "US").as_deref(),
                Ok(e164.as_str()),
                "{s:?}"
            );
        }
        if let Ok(e) = normalize_email(&s) {
            assert_eq!(e, e.to_lowercase());
            assert!(e.contains('@'));
        }
    }
}

#[test]
fn customer_validation_never_panics() {
    let mut rng = StdRng::seed_from_u64(7);
    let cfg = ArchiveConfig::default();
    for _ in 0..5_000 {
        let input = CustomerInput {
            name: Some(random_text(&mut rng)),
            tier: rng.random_bool(0.5).then(|| random_text(&mut rng)),
            tags: Some(vec![random_text(&mut rng)]),
            language: rng.random_bool(0.3).then(|| random_text(&mut rng)),
            phones: Some(vec![random_text(&mut rng), random_text(&mut rng)]),
            emails: Some(vec![random_text(&mut rng)]),
            region: rng.random_bool(0.3).then(|| random_text(&mut rng)),
            ..Default::default()
        };
        let _ = normalize_customer(&input, None, &cfg);
    }
}

#[test]
fn csv_import_parser_reports_every_line_and_never_panics() {
    let mut rng = StdRng::seed_from_u64(42);
    let cfg = ArchiveConfig::default();
    for _ in 0..2_000 {
        let mut text = String::from("external_ref,name,phone,email,tier,do_not_call\n");
        let rows = rng.random_range(0..20);
        for i in 0..rows {
            if rng.random_bool(0.7) {
                text.push_str(&format!(
                    "R{i},{},{},x{i}@example.cn,,\n",
                    random_text(&mut rng),
                    random_text(&mut rng)
                ));
            } else {
                text.push_str(&random_text(&mut rng));
                text.push('\n');
            }
        }
        let lines = text.split(['\n', '\r']).count() as u64;
        let result = import::parse(&text, &cfg, |row, _| {
            let line = match row {
                Ok(r) => r.line,
                Err((line, reason)) => {
                    assert!(!reason.is_empty());
                    line
                }
            };
            assert!((2..=lines).contains(&line), "line {line} of {lines}");
        });
        assert!(result.is_ok(), "a valid header is never refused");
    }
    // Garbage headers are refused with a reason, not a panic.
    for _ in 0..2_000 {
        let text = random_text(&mut rng);
        let _ = import::parse(&text, &cfg, |_, _| {});
    }
}
