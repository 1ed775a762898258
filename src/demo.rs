//! `contact-hub demo`: a sample company so a newcomer sees the hub work at once — queues,
//! agents (passwords printed), customers in Chinese and English with archive records,
//! contact history and alerts. Running it again refreshes the same data, never duplicates it.

use chrono::{Duration, NaiveDate};
use rand::distr::{Alphanumeric, SampleString};

use crate::acd::types::Capacity;
use crate::archive::normalize_customer;
use crate::config::Config;
use crate::domain::{
    now_ms, ArchiveRecordInput, Channel, ContactState, CustomerInput, CustomerKind, Direction,
    RecordCategory, Role,
};
use crate::store::{AgentProfile, ContactFilter, ImportRow, NewContact, Store};

pub struct DemoAccount {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub password: String,
    /// The desk-phone account (SIP username, password) of an agent.
    pub phone: Option<(String, String)>,
}

/// Desk-phone usernames of the demo agents.
const PHONES: &[(&str, &str)] = &[
    ("alice", "1001"),
    ("bob", "1002"),
    ("lina", "1003"),
    ("sophie", "1009"),
];

const QUEUES: &[(&str, &str, &str)] = &[
    (
        "support",
        "客户服务 Support",
        "General questions and after-sales service",
    ),
    ("sales", "销售 Sales", "New orders and quotations"),
    (
        "billing",
        "账务 Billing",
        "Invoices, payments and receivables",
    ),
    ("vip", "贵宾 VIP", "Dedicated line for VIP customers"),
];

const ACCOUNTS: &[(&str, &str, Role)] = &[
    ("admin", "Administrator", Role::Admin),
    ("sophie", "Sophie Zhang 张素菲", Role::Supervisor),
    ("alice", "Alice Wang 王爱丽", Role::Agent),
    ("bob", "Bob Li 李博", Role::Agent),
    ("lina", "李娜", Role::Agent),
];

/// Skills of the demo agents, matching the sample routing rules (routing-rules/).
const SKILLS: &[(&str, &[(&str, u8)])] = &[
    (
        "sophie",
        &[("support", 3), ("vip", 2), ("mandarin", 5), ("english", 4)],
    ),
    (
        "alice",
        &[
            ("support", 3),
            ("sales", 2),
            ("vip", 1),
            ("mandarin", 5),
            ("english", 4),
        ],
    ),
    (
        "bob",
        &[
            ("support", 2),
            ("billing", 3),
            ("english", 5),
            ("mandarin", 3),
        ],
    ),
    (
        "lina",
        &[
            ("support", 2),
            ("billing", 2),
            ("mandarin", 5),
            ("traditional_chinese", 4),
        ],
    ),
];

struct DemoCustomer {
    reference: &'static str,
    kind: CustomerKind,
    name: &'static str,
    tier: &'static str,
    phones: &'static [&'static str],
    emails: &'static [&'static str],
    region: &'static str,
    language: &'static str,
    tags: &'static [&'static str],
    channel: Channel,
    notes: &'static str,
}

const CUSTOMERS: &[DemoCustomer] = &[
    DemoCustomer {
        reference: "C-1001",
        kind: CustomerKind::Person,
        name: "王小明",
        tier: "vip",
        phones: &["+86 138 0013 8000"],
        emails: &["wang.xiaoming@example.cn"],
        region: "CN",
        language: "zh-CN",
        tags: &["长期客户", "企业采购"],
        channel: Channel::Voice,
        notes: "喜欢电话联系，下午两点后方便。",
    },
    DemoCustomer {
        reference: "C-1002",
        kind: CustomerKind::Company,
        name: "北京华星贸易有限公司",
        tier: "important",
        phones: &["010-1234 5678"],
        emails: &["service@huaxing.example.cn"],
        region: "CN",
        language: "zh-CN",
        tags: &["经销商"],
        channel: Channel::Email,
        notes: "对账联系人：财务部刘女士。",
    },
    DemoCustomer {
        reference: "C-1003",
        kind: CustomerKind::Person,
        name: "陳大文",
        tier: "ordinary",
        phones: &["(02) 2345-6789"],
        emails: &["david.chan@example.tw"],
        region: "TW",
        language: "zh-TW",
        tags: &["台北"],
        channel: Channel::Chat,
        notes: "偏好繁體中文回覆。",
    },
    DemoCustomer {
        reference: "C-1004",
        kind: CustomerKind::Person,
        name: "Emily Carter",
        tier: "ordinary",
        phones: &["+1 415 555 0100"],
        emails: &["emily.carter@example.com"],
        region: "US",
        language: "en",
        tags: &["newsletter"],
        channel: Channel::Email,
        notes: "Prefers email; do not call before 10:00 PT.",
    },
    DemoCustomer {
        reference: "C-1005",
        kind: CustomerKind::Company,
        name: "Harbour Logistics Ltd",
        tier: "vip",
        phones: &["+852 2123 4567"],
        emails: &["ops@harbour-logistics.example.hk"],
        region: "HK",
        language: "en",
        tags: &["key account", "logistics"],
        channel: Channel::Voice,
        notes: "Account manager: Sophie.",
    },
    DemoCustomer {
        reference: "C-1006",
        kind: CustomerKind::Person,
        name: "刘芳",
        tier: "important",
        phones: &["139 1000 2000"],
        emails: &["liufang@example.cn"],
        region: "CN",
        language: "zh-CN",
        tags: &[],
        channel: Channel::Chat,
        notes: "",
    },
];

fn record(
    category: RecordCategory,
    reference: &str,
    description: &str,
    amount: Option<i64>,
    status: &str,
    occurred: NaiveDate,
    expires: Option<String>,
) -> ArchiveRecordInput {
    ArchiveRecordInput {
        category,
        reference: reference.into(),
        description: description.into(),
        amount_minor: amount,
        currency: amount.map(|_| "CNY".into()),
        status: status.into(),
        occurred_on: Some(occurred.to_string()),
        expires_on: expires,
    }
}

/// Seeds (or refreshes) the sample company and returns the accounts with fresh passwords.
pub async fn seed(store: &Store, config: &Config) -> anyhow::Result<Vec<DemoAccount>> {
    let now = now_ms();
    // Calls from this machine count as a trunk, so a softphone here can call the hotline.
    let sip = config.data_dir.join("sip.toml");
    if config.sip.file.is_empty() && !sip.exists() {
        std::fs::create_dir_all(&config.data_dir)?;
        std::fs::write(
            &sip,
            "# Written by `contact-hub demo`: calls from this machine count as calls from a carrier.\n\
             # Trunks, registrar and TLS: see channels/sip/README.md.\n\
             [[inbound_trunk]]\nname = \"local\"\nallow = [\"127.0.0.1\", \"::1\"]\n",
        )?;
    }
    let today = chrono::Utc::now().date_naive();
    for (name, display, desc) in QUEUES {
        store.upsert_queue(name, display, desc, now).await?;
    }
    let mut accounts = Vec::new();
    for (username, display, role) in ACCOUNTS {
        let password = Alphanumeric.sample_string(&mut rand::rng(), 12);
        let pw = password.clone();
        let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&pw)).await??;
        match store.user_by_name(username).await? {
            Some(u) => store.update_user(u.id, display, *role, &hash, now).await?,
            None => {
                store
                    .create_user(username, display, *role, &hash, now)
                    .await?;
            }
        }
        let user = store
            .user_by_name(username)
            .await?
            .ok_or_else(|| anyhow::anyhow!("demo user {username} vanished"))?;
        if let Some((_, skills)) = SKILLS.iter().find(|(u, _)| u == username) {
            let profile = AgentProfile {
                skills: skills.iter().map(|(n, l)| (n.to_string(), *l)).collect(),
                capacity: Capacity::default(),
            };
            store.set_agent_profile(user.id, &profile, now).await?;
        }
        let phone = match PHONES.iter().find(|(u, _)| u == username) {
            Some((_, sip_user)) => {
                let pw = Alphanumeric.sample_string(&mut rand::rng(), 12);
                let realm = "contact-hub";
                store
                    .set_sip_account(
                        &crate::store::SipAccount {
                            user_id: user.id,
                            username: sip_user.to_string(),
                            realm: realm.into(),
                            ha1: channel_sip::digest::ha1(
                                channel_sip::digest::Algorithm::Md5,
                                sip_user,
                                realm,
                                &pw,
                            ),
                        },
                        now,
                    )
                    .await?;
                Some((sip_user.to_string(), pw))
            }
            None => None,
        };
        accounts.push(DemoAccount {
            username: username.to_string(),
            display_name: display.to_string(),
            role: *role,
            password,
            phone,
        });
    }
    let mut rows = Vec::new();
    for (i, c) in CUSTOMERS.iter().enumerate() {
        let input = CustomerInput {
            kind: Some(c.kind),
            name: Some(c.name.into()),
            tier: Some(c.tier.into()),
            tags: Some(c.tags.iter().map(|t| t.to_string()).collect()),
            preferred_channel: Some(c.channel),
            language: Some(c.language.into()),
            notes: Some(c.notes.into()),
            external_ref: Some(c.reference.into()),
            phones: Some(c.phones.iter().map(|t| t.to_string()).collect()),
            emails: Some(c.emails.iter().map(|t| t.to_string()).collect()),
            region: Some(c.region.into()),
            ..Default::default()
        };
        let customer = normalize_customer(&input, None, &config.archive)
            .map_err(|e| anyhow::anyhow!("demo customer {}: {e}", c.reference))?;
        rows.push(ImportRow {
            line: i as u64 + 1,
            customer,
        });
    }
    seed_canned_responses(store, now).await?;
    let outcomes = store.import_customers(&rows, now).await?;
    let ids: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            crate::store::ImportOutcome::Created(id) | crate::store::ImportOutcome::Updated(id) => {
                Some(*id)
            }
            crate::store::ImportOutcome::Rejected { .. } => None,
        })
        .collect();
    let d = |days: i64| today + Duration::days(days);
    for (n, &id) in ids.iter().enumerate() {
        let tag = format!("{:04}", 1001 + n);
        let records = vec![
            record(
                RecordCategory::Order,
                &format!("SO-{tag}-01"),
                "年度服务合同 Annual service contract",
                Some(1_280_000),
                "active",
                d(-200),
                None,
            ),
            record(
                RecordCategory::Order,
                &format!("SO-{tag}-02"),
                "打印机耗材 Printer supplies",
                Some(86_000),
                "delivered",
                d(-35),
                None,
            ),
            record(
                RecordCategory::Payment,
                &format!("INV-{tag}-01"),
                "发票 Invoice 2026-Q3",
                Some(1_280_000),
                "paid",
                d(-190),
                None,
            ),
            record(
                RecordCategory::Payment,
                &format!("PAY-{tag}-01"),
                "银行转账 Bank transfer",
                Some(-1_280_000),
                "received",
                d(-185),
                None,
            ),
            record(
                RecordCategory::Payment,
                &format!("INV-{tag}-02"),
                "发票 Invoice supplies",
                Some(86_000),
                if n % 2 == 0 { "overdue" } else { "open" },
                d(-30),
                None,
            ),
            record(
                RecordCategory::Transaction,
                &format!("TX-{tag}-01"),
                "积分兑换 Loyalty points redeemed",
                Some(-5_000),
                "completed",
                d(-12),
                None,
            ),
            record(
                RecordCategory::Return,
                &format!("RMA-{tag}-01"),
                "退货：墨盒破损 Return: damaged cartridge",
                Some(-12_000),
                "refunded",
                d(-20),
                None,
            ),
            record(
                RecordCategory::Document,
                &format!("LIC-{tag}"),
                "营业执照 Business licence",
                None,
                "on file",
                d(-900),
                Some(match n % 3 {
                    0 => d(-20).to_string(),
                    1 => d(10).to_string(),
                    _ => "9999-12-31".into(),
                }),
            ),
            record(
                RecordCategory::Document,
                &format!("ID-{tag}"),
                "身份证明 Identity document",
                None,
                "verified",
                d(-400),
                Some(d(1500).to_string()),
            ),
        ];
        for r in records {
            store.upsert_record(id, &r, now).await?;
        }
        let has_history = !store
            .list_contacts(&ContactFilter {
                customer_id: Some(id),
                limit: 1,
                ..Default::default()
            })
            .await?
            .is_empty();
        if has_history {
            continue;
        }
        let case = store
            .create_case(
                Some(id),
                "耗材退货与补发 Return and replacement of supplies",
                now,
            )
            .await?;
        let history = [
            (
                Channel::Voice,
                Direction::Inbound,
                "support",
                "询问订单状态 Order status",
                -30,
            ),
            (
                Channel::Email,
                Direction::Inbound,
                "billing",
                "发票抬头修改 Invoice title change",
                -21,
            ),
            (
                Channel::Chat,
                Direction::Inbound,
                "support",
                "墨盒破损 Damaged cartridge",
                -20,
            ),
            (
                Channel::Outbound,
                Direction::Outbound,
                "sales",
                "续约提醒 Renewal reminder",
                -5,
            ),
        ];
        for (channel, direction, queue, subject, days) in history {
            let contact = store
                .create_contact(
                    &NewContact {
                        channel,
                        direction,
                        customer_id: Some(id),
                        case_id: (channel == Channel::Chat).then_some(case.id),
                        queue: Some(queue.into()),
                        state: ContactState::Queued,
                        priority: 0,
                        subject: Some(subject.into()),
                        agent_id: None,
                        conversation_id: None,
                    },
                    now + days * 86_400_000,
                )
                .await?;
            for (state, after) in [
                (ContactState::Connected, 25_000),
                (ContactState::WrapUp, 400_000),
                (ContactState::Closed, 460_000),
            ] {
                store
                    .set_contact_state(
                        contact.id,
                        state,
                        None,
                        now + days * 86_400_000 + after,
                        &serde_json::json!({"demo": true}),
                    )
                    .await?;
            }
        }
    }
    Ok(accounts)
}

/// Canned responses for the chat and email panes, in the three languages.
const CANNED: &[(&str, &str, &str)] = &[
    (
        "问候",
        "您好 {customer.name}，我是客服 {agent.name}，很高兴为您服务。请问有什么可以帮您？",
        "zh-CN",
    ),
    ("稍等", "好的，请稍等，我马上为您查询。", "zh-CN"),
    (
        "补发",
        "非常抱歉给您带来不便！我们已为您安排补发，预计 2–3 个工作日送达。",
        "zh-CN",
    ),
    (
        "结束语",
        "感谢您的耐心，{customer.name}。如果还有其他问题，欢迎随时联系我们，祝您生活愉快！",
        "zh-CN",
    ),
    (
        "問候",
        "您好 {customer.name}，我是客服 {agent.name}，很高興為您服務。請問有什麼可以幫您？",
        "zh-TW",
    ),
    ("稍候", "好的，請稍候，我馬上為您查詢。", "zh-TW"),
    (
        "結束語",
        "感謝您的耐心，{customer.name}。如有其他問題，歡迎隨時聯絡我們！",
        "zh-TW",
    ),
    (
        "Greeting",
        "Hello {customer.name}, this is {agent.name}. How can I help you today?",
        "en",
    ),
    (
        "One moment",
        "Thank you, one moment please while I look into this.",
        "en",
    ),
    (
        "Closing",
        "Thank you for contacting us, {customer.name}. Have a great day!",
        "en",
    ),
];

async fn seed_canned_responses(store: &Store, now: i64) -> anyhow::Result<()> {
    let existing = store.canned_responses().await?;
    for (title, body, lang) in CANNED {
        if !existing.iter().any(|c| c.title == *title) {
            store
                .create_canned_response(title, body, Some(lang), now)
                .await?;
        }
    }
    Ok(())
}

/// A scripted customer of the demo: who they are, how they open, and what they answer to
/// each of the agent's messages.
struct SampleChat {
    name: &'static str,
    email: &'static str,
    language: &'static str,
    topic: &'static str,
    opening: &'static str,
    replies: &'static [&'static str],
}

const SAMPLE_CHATS: &[SampleChat] = &[
    SampleChat {
        name: "王小明",
        email: "wang.xiaoming@example.cn",
        language: "zh-CN",
        topic: "support",
        opening: "你好，我上周订的墨盒今天到了，有一盒外包装破损，墨水漏了。",
        replies: &[
            "订单号是 A-10086。",
            "可以的，地址不变。谢谢！",
            "好的，那我等新的到，辛苦了。",
        ],
    },
    SampleChat {
        name: "Emily Carter",
        email: "emily.carter@example.com",
        language: "en",
        topic: "billing",
        opening: "Hi, I was charged twice for invoice INV-2291. Could you check?",
        replies: &[
            "Sure, it was on the 3rd of this month, both charges are 1,280 CNY.",
            "Great, thanks for sorting it out so quickly.",
        ],
    },
    SampleChat {
        name: "陳大文",
        email: "david.chan@example.tw",
        language: "zh-TW",
        topic: "sales",
        opening: "您好，想詢問一下企業大量採購影印紙有沒有優惠？",
        replies: &[
            "大約每個月 200 箱，送到台北。",
            "好的，麻煩寄報價單給我，謝謝。",
        ],
    },
];

/// Sample traffic for `contact-hub demo`: whenever an agent is available and no sample chat is
/// running, one of the demo customers opens a web chat through the real chat socket and
/// answers the agent from its script, so a newcomer sees an offer with a screen-pop at once.
pub async fn sample_chats(addr: std::net::SocketAddr, hub: crate::hub::HubHandle) {
    let mut next = 0usize;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    loop {
        let script = &SAMPLE_CHATS[next % SAMPLE_CHATS.len()];
        let queue = match script.topic {
            "billing" => "billing",
            "sales" => "sales",
            _ => "support",
        };
        let available = hub
            .outlook(queue, Channel::Chat)
            .await
            .ok()
            .flatten()
            .is_some_and(|o| o.open && o.available > 0);
        if !available {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            continue;
        }
        next += 1;
        if let Err(e) = sample_chat(addr, script).await {
            tracing::debug!(error = %e, "a demo chat stopped");
        }
        tokio::time::sleep(std::time::Duration::from_secs(45)).await;
    }
}

async fn sample_chat(addr: std::net::SocketAddr, script: &SampleChat) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat/ws")).await?;
    let start = serde_json::json!({
        "type": "start", "name": script.name, "email": script.email, "language": script.language,
        "topic": script.topic, "page": "http://shop.example.cn/chat/example",
        "message": {"client_id": "demo-0", "text": script.opening},
    });
    ws.send(Message::Text(start.to_string().into())).await?;
    let mut replies = script.replies.iter();
    let mut n = 0;
    // A sample chat lasts at most half an hour.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1800);
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let Message::Text(text) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        match v["type"].as_str() {
            Some("ended") => break,
            Some("message") if v["from"] == "agent" => {
                let Some(reply) = replies.next() else {
                    continue;
                };
                let typing = serde_json::json!({"type": "typing", "active": true});
                ws.send(Message::Text(typing.to_string().into())).await?;
                tokio::time::sleep(std::time::Duration::from_millis(
                    1500 + 40 * reply.chars().count() as u64,
                ))
                .await;
                n += 1;
                let m = serde_json::json!({"type": "message", "client_id": format!("demo-{n}"), "text": reply});
                ws.send(Message::Text(m.to_string().into())).await?;
            }
            Some("heartbeat") => {
                ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await?;
            }
            _ => {}
        }
    }
    Ok(())
}
