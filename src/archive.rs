//! The customer file: validation of customer and archive input, and the screen-pop's alerts and
//! balance. Pure functions: `today` is an input.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ArchiveConfig;
use crate::domain::{
    ArchiveRecord, ArchiveRecordInput, Case, Contact, Customer, CustomerInput, CustomerKind,
    IdentityKind, RecordCategory,
};
use crate::identity::{normalize_email, normalize_phone, search_key};
use crate::store::NormalizedCustomer;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_NOTES_CHARS: usize = 20_000;
pub const MAX_TAGS: usize = 50;
pub const MAX_IDENTITIES_PER_KIND: usize = 20;

/// Validates and normalizes a full customer (create, or a CSV import row).
/// `base` holds the current values when updating, so absent fields keep them.
pub fn normalize_customer(
    input: &CustomerInput,
    base: Option<&Customer>,
    cfg: &ArchiveConfig,
) -> Result<NormalizedCustomer, String> {
    let name = input
        .name
        .clone()
        .or_else(|| base.map(|b| b.name.clone()))
        .unwrap_or_default();
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err("name is required".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("name is longer than {MAX_NAME_CHARS} characters"));
    }
    let tier = input
        .tier
        .clone()
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .or_else(|| base.map(|b| b.tier.clone()))
        .unwrap_or_else(|| cfg.default_tier.clone());
    if !cfg.tiers.contains(&tier) {
        return Err(format!(
            "unknown tier {tier:?} (configured tiers: {})",
            cfg.tiers.join(", ")
        ));
    }
    let mut tags: Vec<String> = input
        .tags
        .clone()
        .or_else(|| base.map(|b| b.tags.clone()))
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    tags.dedup();
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.contains(',')) {
        return Err(format!("at most {MAX_TAGS} tags, none containing a comma"));
    }
    let notes = input
        .notes
        .clone()
        .or_else(|| base.map(|b| b.notes.clone()))
        .unwrap_or_default();
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(format!(
            "notes are longer than {MAX_NOTES_CHARS} characters"
        ));
    }
    let language = input
        .language
        .clone()
        .or_else(|| base.and_then(|b| b.language.clone()))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty());
    if let Some(l) = &language {
        if l.len() > 20 || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "language {l:?} is not a language tag such as zh-CN"
            ));
        }
    }
    let region = input
        .region
        .clone()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| cfg.default_region.clone());
    let mut identities: Vec<(IdentityKind, String)> = Vec::new();
    let mut replace_kinds = Vec::new();
    let lists = [
        (IdentityKind::Phone, &input.phones),
        (IdentityKind::Email, &input.emails),
        (IdentityKind::Fax, &input.faxes),
        (IdentityKind::Chat, &input.chat_ids),
    ];
    for (kind, list) in lists {
        let Some(list) = list else { continue };
        replace_kinds.push(kind);
        if list.len() > MAX_IDENTITIES_PER_KIND {
            return Err(format!(
                "at most {MAX_IDENTITIES_PER_KIND} {kind} identities"
            ));
        }
        for raw in list.iter().filter(|r| !r.trim().is_empty()) {
            let value = match kind {
                IdentityKind::Phone | IdentityKind::Fax => {
                    normalize_phone(raw, &region).map_err(|e| format!("{kind}: {e}"))?
                }
                IdentityKind::Email => normalize_email(raw).map_err(|e| e.to_string())?,
                IdentityKind::Chat => {
                    let v = raw.trim().to_string();
                    if v.len() > 200 {
                        return Err("chat visitor id longer than 200 bytes".into());
                    }
                    v
                }
            };
            if !identities.iter().any(|(k, v)| *k == kind && *v == value) {
                identities.push((kind, value));
            }
        }
    }
    let external_ref = input
        .external_ref
        .clone()
        .or_else(|| base.and_then(|b| b.external_ref.clone()))
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    Ok(NormalizedCustomer {
        kind: input
            .kind
            .or(base.map(|b| b.kind))
            .unwrap_or(CustomerKind::Person),
        name_search: search_key(&name),
        name,
        tier,
        tags,
        preferred_channel: input
            .preferred_channel
            .or(base.and_then(|b| b.preferred_channel)),
        language,
        do_not_call: input
            .do_not_call
            .or(base.map(|b| b.do_not_call))
            .unwrap_or(false),
        do_not_email: input
            .do_not_email
            .or(base.map(|b| b.do_not_email))
            .unwrap_or(false),
        notes,
        external_ref,
        identities,
        replace_kinds,
    })
}

/// Checks an archive record before it is stored.
pub fn validate_record(r: &ArchiveRecordInput) -> Result<(), String> {
    if r.reference.trim().is_empty() || r.reference.len() > 100 {
        return Err("reference is required (at most 100 bytes)".into());
    }
    if r.description.chars().count() > 2000 {
        return Err("description is longer than 2000 characters".into());
    }
    for (field, value) in [
        ("occurred_on", &r.occurred_on),
        ("expires_on", &r.expires_on),
    ] {
        if let Some(v) = value {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map_err(|_| format!("{field} {v:?} is not a date YYYY-MM-DD"))?;
        }
    }
    if r.amount_minor.is_some() && r.currency.as_deref().is_none_or(|c| c.len() != 3) {
        return Err("an amount needs a three-letter currency (e.g. CNY)".into());
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    DocumentExpired,
    DocumentExpiring,
    /// An expiry no real document has (e.g. 9999-12-31): a data-entry error to correct.
    DocumentExpirySuspicious,
    BalanceOverdue,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    /// English fallback; clients translate by `kind`.
    pub message: String,
    pub record_id: Option<i64>,
    pub reference: Option<String>,
    pub expires_on: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// Owed by the customer, in minor units; negative = credit.
    pub amount_minor: i64,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Records {
    pub orders: Vec<ArchiveRecord>,
    pub payments: Vec<ArchiveRecord>,
    pub transactions: Vec<ArchiveRecord>,
    pub returns: Vec<ArchiveRecord>,
    pub documents: Vec<ArchiveRecord>,
}

impl Records {
    pub fn from_list(list: Vec<ArchiveRecord>) -> Records {
        let mut r = Records::default();
        for rec in list {
            match rec.category {
                RecordCategory::Order => r.orders.push(rec),
                RecordCategory::Payment => r.payments.push(rec),
                RecordCategory::Transaction => r.transactions.push(rec),
                RecordCategory::Return => r.returns.push(rec),
                RecordCategory::Document => r.documents.push(rec),
            }
        }
        r
    }
}

/// Everything an agent sees when a contact is offered, in one answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScreenPop {
    pub customer: Customer,
    pub balance: Balance,
    pub records: Records,
    /// The last 20 contacts on every channel, newest first.
    pub recent_contacts: Vec<Contact>,
    pub open_cases: Vec<Case>,
    pub alerts: Vec<Alert>,
}

/// The balance in the customer's main currency (the one most payment records use).
pub fn balance(payments: &[ArchiveRecord]) -> Balance {
    let mut sums: Vec<(String, i64, usize)> = Vec::new();
    for p in payments {
        let (Some(amount), Some(cur)) = (p.amount_minor, p.currency.as_ref()) else {
            continue;
        };
        match sums.iter_mut().find(|(c, _, _)| c == cur) {
            Some(e) => {
                e.1 += amount;
                e.2 += 1;
            }
            None => sums.push((cur.clone(), amount, 1)),
        }
    }
    sums.sort_by_key(|s| std::cmp::Reverse(s.2));
    sums.into_iter()
        .next()
        .map(|(c, a, _)| Balance {
            amount_minor: a,
            currency: Some(c),
        })
        .unwrap_or_default()
}

/// Alerts for the screen-pop: expired, expiring-soon and implausible documents; overdue balances.
pub fn alerts(records: &Records, today: NaiveDate, cfg: &ArchiveConfig) -> Vec<Alert> {
    let mut out = Vec::new();
    let soon = today + chrono::Duration::days(cfg.expiring_soon_days);
    let implausible = today
        .checked_add_months(chrono::Months::new(
            (cfg.max_document_validity_years.clamp(0, 1000) * 12) as u32,
        ))
        .unwrap_or(NaiveDate::MAX);
    for d in &records.documents {
        let Some(exp) = &d.expires_on else { continue };
        let alert = |kind, severity, message: String| Alert {
            kind,
            severity,
            message,
            record_id: Some(d.id),
            reference: Some(d.reference.clone()),
            expires_on: Some(exp.clone()),
        };
        match NaiveDate::parse_from_str(exp, "%Y-%m-%d") {
            Err(_) => out.push(alert(
                AlertKind::DocumentExpirySuspicious,
                Severity::Warning,
                format!("Document {} has an unreadable expiry date {exp:?}", d.reference),
            )),
            Ok(date) if date < today => out.push(alert(
                AlertKind::DocumentExpired,
                Severity::Critical,
                format!("Document {} expired on {exp}", d.reference),
            )),
            Ok(date) if date > implausible => out.push(alert(
                AlertKind::DocumentExpirySuspicious,
                Severity::Warning,
                format!(
                    "Document {} is marked valid until {exp}, more than {} years ahead: check the real expiry",
                    d.reference, cfg.max_document_validity_years
                ),
            )),
            Ok(date) if date <= soon => out.push(alert(
                AlertKind::DocumentExpiring,
                Severity::Warning,
                format!("Document {} expires on {exp}", d.reference),
            )),
            Ok(_) => {}
        }
    }
    for p in &records.payments {
        if p.status.eq_ignore_ascii_case("overdue") {
            out.push(Alert {
                kind: AlertKind::BalanceOverdue,
                severity: Severity::Warning,
                message: format!("Receivable {} is overdue", p.reference),
                record_id: Some(p.id),
                reference: Some(p.reference.clone()),
                expires_on: None,
            });
        }
    }
    out.sort_by_key(|a| matches!(a.severity, Severity::Warning));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: i64, expires: &str) -> ArchiveRecord {
        ArchiveRecord {
            id,
            category: RecordCategory::Document,
            reference: format!("LIC-{id}"),
            description: String::new(),
            amount_minor: None,
            currency: None,
            status: String::new(),
            occurred_on: None,
            expires_on: Some(expires.into()),
        }
    }

    fn pay(amount: i64, cur: &str, status: &str) -> ArchiveRecord {
        ArchiveRecord {
            category: RecordCategory::Payment,
            amount_minor: Some(amount),
            currency: Some(cur.into()),
            status: status.into(),
            expires_on: None,
            ..doc(9, "")
        }
    }

    #[test]
    fn documents_raise_the_right_alerts() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let records = Records {
            documents: vec![
                doc(1, "2026-01-01"),
                doc(2, "2026-12-10"),
                doc(3, "9999-12-31"),
                doc(4, "2028-06-30"),
                doc(5, "31/12/2030"),
            ],
            ..Default::default()
        };
        let a = alerts(&records, today, &ArchiveConfig::default());
        let kinds: Vec<(i64, String)> = a
            .iter()
            .map(|a| (a.record_id.unwrap(), format!("{:?}", a.kind)))
            .collect();
        assert_eq!(a.len(), 4, "{kinds:?}");
        assert!(kinds.contains(&(1, "DocumentExpired".into())));
        assert!(kinds.contains(&(2, "DocumentExpiring".into())));
        assert!(kinds.contains(&(3, "DocumentExpirySuspicious".into())));
        assert!(kinds.contains(&(5, "DocumentExpirySuspicious".into())));
        assert!(
            matches!(a[0].severity, Severity::Critical),
            "critical first"
        );
    }

    #[test]
    fn balance_uses_the_main_currency_and_overdue_alerts() {
        let p = vec![
            pay(100_000, "CNY", "overdue"),
            pay(-40_000, "CNY", "paid"),
            pay(500, "USD", "open"),
        ];
        let b = balance(&p);
        assert_eq!(b.amount_minor, 60_000);
        assert_eq!(b.currency.as_deref(), Some("CNY"));
        let a = alerts(
            &Records {
                payments: p,
                ..Default::default()
            },
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            &ArchiveConfig::default(),
        );
        assert_eq!(a.len(), 1);
        assert!(matches!(a[0].kind, AlertKind::BalanceOverdue));
    }

    #[test]
    fn customer_input_is_normalized_and_checked() {
        let cfg = ArchiveConfig::default();
        let input = CustomerInput {
            name: Some("  王小明 ".into()),
            tier: Some("VIP".into()),
            phones: Some(vec!["138 0013 8000".into(), "+86 138-0013-8000".into()]),
            emails: Some(vec!["Wang@Example.CN".into()]),
            ..Default::default()
        };
        let n = normalize_customer(&input, None, &cfg).unwrap();
        assert_eq!(n.name, "王小明");
        assert_eq!(n.tier, "vip");
        assert_eq!(
            n.identities,
            vec![
                (IdentityKind::Phone, "+8613800138000".to_string()),
                (IdentityKind::Email, "wang@example.cn".to_string())
            ]
        );
        let bad = CustomerInput {
            name: Some("x".into()),
            tier: Some("platinum".into()),
            ..Default::default()
        };
        assert!(normalize_customer(&bad, None, &cfg)
            .unwrap_err()
            .contains("platinum"));
        let no_name = CustomerInput::default();
        assert!(normalize_customer(&no_name, None, &cfg).is_err());
    }
}
