//! The store suite: every test runs on SQLite and on PostgreSQL (when TEST_DATABASE_URL is set;
//! scripts/test always sets it).

mod common;

use chrono::NaiveDate;
use contact_hub::archive::{normalize_customer, AlertKind};
use contact_hub::config::ArchiveConfig;
use contact_hub::domain::{
    now_ms, ArchiveRecordInput, Channel, ContactState, CustomerInput, Direction, IdentityKind,
    RecordCategory, Role,
};
use contact_hub::store::{
    AgentEventRow, ContactFilter, CustomerSearch, EmailRouting, EmailStored, FailedLogins,
    ImportOutcome, ImportRow, NewContact, NewEmail, Store, StoreError,
};

fn cfg() -> ArchiveConfig {
    ArchiveConfig::default()
}

fn input(name: &str, phones: &[&str], emails: &[&str]) -> CustomerInput {
    CustomerInput {
        name: Some(name.into()),
        phones: Some(phones.iter().map(|s| s.to_string()).collect()),
        emails: Some(emails.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

async fn search(store: &Store, q: &str) -> Vec<String> {
    store
        .search_customers(&CustomerSearch {
            q: q.into(),
            limit: 20,
            default_region: "CN".into(),
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn contact(customer: i64, channel: Channel) -> NewContact {
    NewContact {
        channel,
        direction: Direction::Inbound,
        customer_id: Some(customer),
        case_id: None,
        queue: Some("support".into()),
        state: ContactState::Queued,
        priority: 0,
        subject: Some("主题 subject".into()),
        agent_id: None,
        conversation_id: None,
    }
}

#[tokio::test]
async fn customers_are_found_by_numbers_in_any_format_and_by_name() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let now = now_ms();
        let wang = normalize_customer(
            &input(
                "王小明",
                &["+86 138 0013 8000", "010-1234 5678"],
                &["Wang@Example.CN"],
            ),
            None,
            &cfg(),
        )
        .unwrap();
        store.create_customer(&wang, now).await.unwrap();
        let mut chen = input("陳大文", &["(02) 2345-6789"], &[]);
        chen.region = Some("TW".into());
        let chen = normalize_customer(&chen, None, &cfg()).unwrap();
        store.create_customer(&chen, now).await.unwrap();
        let emily = normalize_customer(
            &input("Emily Carter", &[], &["emily@example.com"]),
            None,
            &cfg(),
        )
        .unwrap();
        store.create_customer(&emily, now).await.unwrap();

        for q in [
            "13800138000",
            "138-0013-8000",
            "+8613800138000",
            "+86 (138) 0013 8000",
            "01012345678",
            "010 1234 5678",
            "+86 10 1234 5678",
        ] {
            assert_eq!(search(&store, q).await, vec!["王小明"], "{}: {q}", db.name);
        }
        for q in ["+886 2 2345 6789", "+886223456789", "23456789"] {
            assert_eq!(search(&store, q).await, vec!["陳大文"], "{}: {q}", db.name);
        }
        assert_eq!(search(&store, "小明").await, vec!["王小明"], "{}", db.name);
        assert_eq!(search(&store, "大文").await, vec!["陳大文"], "{}", db.name);
        assert_eq!(
            search(&store, "emily").await,
            vec!["Emily Carter"],
            "{}",
            db.name
        );
        assert_eq!(
            search(&store, "WANG@example.cn").await,
            vec!["王小明"],
            "{}",
            db.name
        );
        assert_eq!(
            search(&store, "emily@").await,
            vec!["Emily Carter"],
            "{}",
            db.name
        );
        assert!(search(&store, "nobody-like-this").await.is_empty());
        assert!(
            search(&store, "100%_\\").await.is_empty(),
            "LIKE wildcards are escaped"
        );
        // The caller-id lookup a phone channel makes.
        let id = store
            .customer_by_identity(IdentityKind::Phone, "+886223456789")
            .await
            .unwrap();
        assert!(id.is_some(), "{}", db.name);
    }
}

#[tokio::test]
async fn an_identity_has_one_owner() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let a = normalize_customer(&input("A", &["13800138000"], &[]), None, &cfg()).unwrap();
        let a_id = store.create_customer(&a, now_ms()).await.unwrap();
        let b = normalize_customer(&input("B", &["+86 138 0013 8000"], &[]), None, &cfg()).unwrap();
        match store.create_customer(&b, now_ms()).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains("+8613800138000"), "{m}"),
            other => panic!("{}: expected conflict, got {other:?}", db.name),
        }
        assert_eq!(
            store.customer_count().await.unwrap(),
            1,
            "nothing half-written"
        );
        // Updating A with a new list replaces its phones.
        let mut current = store.get_customer(a_id).await.unwrap();
        let changed =
            normalize_customer(&input("A2", &["13900139000"], &[]), Some(&current), &cfg())
                .unwrap();
        store
            .update_customer(a_id, &changed, now_ms())
            .await
            .unwrap();
        current = store.get_customer(a_id).await.unwrap();
        assert_eq!(current.name, "A2");
        assert_eq!(current.identities.len(), 1);
        assert_eq!(current.identities[0].value, "+8613900139000");
        assert!(matches!(
            store.get_customer(9999).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn screen_pop_has_card_balance_alerts_last_20_contacts_and_open_cases() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let now = now_ms();
        let c = normalize_customer(
            &input("Harbour Logistics 港湾物流", &["+852 2123 4567"], &[]),
            None,
            &cfg(),
        )
        .unwrap();
        let id = store.create_customer(&c, now).await.unwrap();
        let other = store
            .create_customer(
                &normalize_customer(&input("Other", &[], &[]), None, &cfg()).unwrap(),
                now,
            )
            .await
            .unwrap();
        let rec = |category,
                   reference: &str,
                   amount: Option<i64>,
                   status: &str,
                   expires: Option<&str>| ArchiveRecordInput {
            category,
            reference: reference.into(),
            description: "说明".into(),
            amount_minor: amount,
            currency: amount.map(|_| "CNY".into()),
            status: status.into(),
            occurred_on: Some("2026-01-02".into()),
            expires_on: expires.map(String::from),
        };
        for r in [
            rec(RecordCategory::Order, "SO-1", Some(100_000), "active", None),
            rec(
                RecordCategory::Payment,
                "INV-1",
                Some(100_000),
                "overdue",
                None,
            ),
            rec(
                RecordCategory::Payment,
                "PAY-1",
                Some(-30_000),
                "received",
                None,
            ),
            rec(
                RecordCategory::Transaction,
                "TX-1",
                Some(-500),
                "done",
                None,
            ),
            rec(
                RecordCategory::Return,
                "RMA-1",
                Some(-1_000),
                "refunded",
                None,
            ),
            rec(
                RecordCategory::Document,
                "LIC-OLD",
                None,
                "",
                Some("2020-01-01"),
            ),
            rec(
                RecordCategory::Document,
                "LIC-SOON",
                None,
                "",
                Some("2026-12-01"),
            ),
            rec(
                RecordCategory::Document,
                "LIC-9999",
                None,
                "",
                Some("9999-12-31"),
            ),
        ] {
            store.upsert_record(id, &r, now).await.unwrap();
        }
        // Upsert by reference: the status changes, no duplicate.
        store
            .upsert_record(
                id,
                &rec(
                    RecordCategory::Order,
                    "SO-1",
                    Some(100_000),
                    "delivered",
                    None,
                ),
                now,
            )
            .await
            .unwrap();
        let channels = [
            Channel::Voice,
            Channel::Email,
            Channel::Chat,
            Channel::Fax,
            Channel::Callback,
        ];
        for i in 0..25 {
            store
                .create_contact(&contact(id, channels[i % 5]), now + i as i64 * 1000)
                .await
                .unwrap();
        }
        store
            .create_contact(&contact(other, Channel::Voice), now + 99_000)
            .await
            .unwrap();
        store
            .create_case(Some(id), "退货 Return", now)
            .await
            .unwrap();

        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let pop = store.screen_pop(id, today, &cfg()).await.unwrap();
        assert_eq!(
            pop.customer.name, "Harbour Logistics 港湾物流",
            "{}",
            db.name
        );
        assert_eq!(pop.records.orders.len(), 1);
        assert_eq!(pop.records.orders[0].status, "delivered");
        assert_eq!(pop.records.payments.len(), 2);
        assert_eq!(pop.records.transactions.len(), 1);
        assert_eq!(pop.records.returns.len(), 1);
        assert_eq!(pop.records.documents.len(), 3);
        assert_eq!(pop.balance.amount_minor, 70_000);
        assert_eq!(pop.recent_contacts.len(), 20, "{}", db.name);
        assert!(pop
            .recent_contacts
            .iter()
            .all(|c| c.customer_id == Some(id)));
        assert!(
            pop.recent_contacts
                .windows(2)
                .all(|w| w[0].created_at >= w[1].created_at),
            "newest first"
        );
        let kinds: Vec<_> = pop.recent_contacts.iter().map(|c| c.channel).collect();
        assert!(
            kinds.contains(&Channel::Fax) && kinds.contains(&Channel::Chat),
            "every channel"
        );
        assert_eq!(pop.open_cases.len(), 1);
        let alert = |kind: &str| {
            pop.alerts
                .iter()
                .filter(|a| format!("{:?}", a.kind) == kind)
                .count()
        };
        assert_eq!(alert("DocumentExpired"), 1, "{:?}", pop.alerts);
        assert_eq!(alert("DocumentExpiring"), 1);
        assert_eq!(alert("DocumentExpirySuspicious"), 1, "9999-12-31 is caught");
        assert_eq!(alert("BalanceOverdue"), 1);
        assert!(matches!(pop.alerts[0].kind, AlertKind::DocumentExpired));
        assert!(matches!(
            store.screen_pop(424242, today, &cfg()).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn contact_events_and_agent_events_are_append_only() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let now = now_ms();
        let agent = common::add_user(&store, "agent-x", Role::Agent, "password-x").await;
        let cid = store
            .create_customer(
                &normalize_customer(&input("C", &[], &[]), None, &cfg()).unwrap(),
                now,
            )
            .await
            .unwrap();
        let c = store
            .create_contact(&contact(cid, Channel::Chat), now)
            .await
            .unwrap();
        store
            .set_contact_state(
                c.id,
                ContactState::Connected,
                Some(agent.id),
                now + 10,
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        store
            .set_contact_state(
                c.id,
                ContactState::Closed,
                None,
                now + 20,
                &serde_json::json!({"disposition": "resolved"}),
            )
            .await
            .unwrap();
        let c2 = store.get_contact(c.id).await.unwrap();
        assert_eq!(c2.state, ContactState::Closed);
        assert_eq!(c2.agent_id, Some(agent.id), "agent kept when not given");
        assert!(c2.connected_at.is_some() && c2.ended_at.is_some());
        let events = store.contact_events(c.id).await.unwrap();
        let states: Vec<_> = events.iter().map(|e| e.state.unwrap()).collect();
        assert_eq!(
            states,
            vec![
                ContactState::Queued,
                ContactState::Connected,
                ContactState::Closed
            ],
            "{}",
            db.name
        );
        assert_eq!(events[2].data["disposition"], "resolved");
        assert!(matches!(
            store
                .set_contact_state(
                    99_999,
                    ContactState::Closed,
                    None,
                    now,
                    &serde_json::json!({})
                )
                .await,
            Err(StoreError::NotFound)
        ));

        // The logs refuse changes.
        for sql in [
            "UPDATE contact_events SET kind = 'x'",
            "DELETE FROM contact_events",
            "UPDATE agent_events SET kind = 'x'",
            "DELETE FROM agent_events",
        ] {
            store
                .append_agent_events(&[AgentEventRow {
                    agent_id: agent.id,
                    at: now,
                    kind: "state".into(),
                    state: Some("available".into()),
                    reason: None,
                    data: serde_json::json!({}),
                }])
                .await
                .unwrap();
            let r = sqlx::query(sql).execute(store.pool()).await;
            assert!(r.is_err(), "{}: {sql} must fail", db.name);
        }
        assert_eq!(store.contact_events(c.id).await.unwrap().len(), 3);
        assert_eq!(store.agent_events(agent.id, 100).await.unwrap().len(), 4);

        let filtered = store
            .list_contacts(&ContactFilter {
                channel: Some(Channel::Chat),
                state: Some(ContactState::Closed),
                customer_id: Some(cid),
                limit: 10,
                before_id: None,
            })
            .await
            .unwrap();
        assert_eq!(filtered.len(), 1);
        let none = store
            .list_contacts(&ContactFilter {
                channel: Some(Channel::Voice),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty());
    }
}

#[tokio::test]
async fn sessions_expire_and_failed_logins_are_kept() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let user = common::add_user(&store, "sess", Role::Supervisor, "password-s").await;
        let now = now_ms();
        store
            .create_session("hash-live", user.id, now, now + 60_000)
            .await
            .unwrap();
        store
            .create_session("hash-old", user.id, now - 120_000, now - 60_000)
            .await
            .unwrap();
        assert_eq!(
            store
                .session_user("hash-live", now)
                .await
                .unwrap()
                .unwrap()
                .0
                .id,
            user.id
        );
        assert!(
            store.session_user("hash-old", now).await.unwrap().is_none(),
            "expired"
        );
        assert!(store
            .session_user("hash-live", now + 60_001)
            .await
            .unwrap()
            .is_none());
        store.delete_session("hash-live").await.unwrap();
        assert!(store
            .session_user("hash-live", now)
            .await
            .unwrap()
            .is_none());

        let f = FailedLogins {
            failures: 3,
            locked_until: now + 5000,
            last_failure_at: now,
        };
        store.record_failed_login("sess", f).await.unwrap();
        assert_eq!(store.failed_logins("sess").await.unwrap(), f);
        store.clear_failed_logins("sess").await.unwrap();
        assert_eq!(
            store.failed_logins("sess").await.unwrap(),
            FailedLogins::default()
        );
        assert!(matches!(
            store
                .create_user("sess", "again", Role::Agent, "h", now)
                .await,
            Err(StoreError::Conflict(_))
        ));
    }
}

#[tokio::test]
async fn bulk_import_creates_updates_and_rejects_per_row() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let row = |line: u64, r: Option<&str>, name: &str, phone: &str| {
            let mut i = input(name, &[phone], &[]);
            i.external_ref = r.map(String::from);
            ImportRow {
                line,
                customer: normalize_customer(&i, None, &cfg()).unwrap(),
            }
        };
        let first = vec![
            row(2, Some("R1"), "张三", "13800000001"),
            row(3, Some("R2"), "李四", "13800000002"),
            row(4, None, "王五", "13800000003"),
            row(5, Some("R3"), "趙六", "13800000001"), // phone of line 2
            row(6, Some("R1"), "dup", "13800000009"),  // R1 again
        ];
        let out = store.import_customers(&first, now_ms()).await.unwrap();
        assert!(
            matches!(out[0], ImportOutcome::Created(_)),
            "{}: {out:?}",
            db.name
        );
        assert!(matches!(out[1], ImportOutcome::Created(_)));
        assert!(matches!(out[2], ImportOutcome::Created(_)));
        assert!(
            matches!(&out[3], ImportOutcome::Rejected { line: 5, reason } if reason.contains("line 2")),
            "{out:?}"
        );
        assert!(
            matches!(&out[4], ImportOutcome::Rejected { line: 6, .. }),
            "{out:?}"
        );
        assert_eq!(store.customer_count().await.unwrap(), 3);

        // Again, changed: updates by reference, and by phone for the row without one.
        let second = vec![
            row(2, Some("R1"), "张三丰", "13800000001"),
            row(3, Some("R2"), "李四", "13800000012"),
            row(4, None, "王五五", "13800000003"),
            row(5, Some("R4"), "新客户", "13800000002"), // R2's old number is free now? no: same batch
        ];
        let out = store.import_customers(&second, now_ms()).await.unwrap();
        assert!(matches!(out[0], ImportOutcome::Updated(_)), "{out:?}");
        assert!(matches!(out[1], ImportOutcome::Updated(_)));
        assert!(matches!(out[2], ImportOutcome::Updated(_)));
        assert!(
            matches!(&out[3], ImportOutcome::Rejected { .. }),
            "the old number still belonged to R2 when checked: {out:?}"
        );
        assert_eq!(store.customer_count().await.unwrap(), 3, "no duplicates");
        assert_eq!(search(&store, "13800000012").await, vec!["李四"]);
        assert_eq!(search(&store, "张三丰").await, vec!["张三丰"]);
        assert_eq!(search(&store, "王五五").await, vec!["王五五"]);
    }
}

/// A customer's identities read back in the order they were given — by the API and by an
/// import that replaces one kind — not in the order of their values.
#[tokio::test]
async fn identities_keep_the_order_they_were_given() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let values = |c: &contact_hub::domain::Customer| -> Vec<String> {
            c.identities.iter().map(|i| i.value.clone()).collect()
        };
        let given = input(
            "顺序 Order",
            &["13900139000", "13800138000"],
            &["zz@example.com", "aa@example.com"],
        );
        let c = normalize_customer(&given, None, &cfg()).unwrap();
        let id = store.create_customer(&c, now_ms()).await.unwrap();
        let stored = store.get_customer(id).await.unwrap();
        assert_eq!(
            values(&stored),
            [
                "+8613900139000",
                "+8613800138000",
                "zz@example.com",
                "aa@example.com"
            ],
            "{}",
            db.name
        );
        // The API replaces the phones: the emails stay, the new phones come after them.
        let phones_only = CustomerInput {
            phones: Some(vec!["13700137000".into(), "13600136000".into()]),
            ..Default::default()
        };
        let changed = normalize_customer(&phones_only, Some(&stored), &cfg()).unwrap();
        store.update_customer(id, &changed, now_ms()).await.unwrap();
        let stored = store.get_customer(id).await.unwrap();
        assert_eq!(
            values(&stored),
            [
                "zz@example.com",
                "aa@example.com",
                "+8613700137000",
                "+8613600136000"
            ],
            "{}",
            db.name
        );
        // An import row found by an email replaces the emails: they follow the kept phones.
        let emails_only = CustomerInput {
            name: Some("顺序 Order".into()),
            emails: Some(vec!["yy@example.com".into(), "zz@example.com".into()]),
            ..Default::default()
        };
        let row = ImportRow {
            line: 2,
            customer: normalize_customer(&emails_only, None, &cfg()).unwrap(),
        };
        let out = store.import_customers(&[row], now_ms()).await.unwrap();
        assert!(
            matches!(out[..], [ImportOutcome::Updated(u)] if u == id),
            "{}: {out:?}",
            db.name
        );
        assert_eq!(
            values(&store.get_customer(id).await.unwrap()),
            [
                "+8613700137000",
                "+8613600136000",
                "yy@example.com",
                "zz@example.com"
            ],
            "{}",
            db.name
        );
    }
}

#[tokio::test]
async fn data_survives_a_restart() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let id = store
            .create_customer(
                &normalize_customer(&input("持久 Durable", &["13812345678"], &[]), None, &cfg())
                    .unwrap(),
                now_ms(),
            )
            .await
            .unwrap();
        store
            .create_contact(&contact(id, Channel::Email), now_ms())
            .await
            .unwrap();
        store.close().await;
        let reopened = common::store(&db).await; // migrations again: a no-op
        assert_eq!(
            reopened.get_customer(id).await.unwrap().name,
            "持久 Durable",
            "{}",
            db.name
        );
        assert_eq!(reopened.recent_contacts(id, 20).await.unwrap().len(), 1);
        assert_eq!(
            search(&reopened, "138 1234 5678").await,
            vec!["持久 Durable"]
        );
    }
}

fn inbound_email(message_id: &str, conversation: Option<i64>, customer: Option<i64>) -> NewEmail {
    NewEmail {
        conversation,
        customer_id: customer,
        language: "zh-CN".into(),
        subject: Some("退货 return".into()),
        thread_key: Some("退货 return".into()),
        direction: "inbound",
        sender: "customer",
        agent_id: None,
        name: Some("王小明".into()),
        body: "我想退一盒墨盒。".into(),
        message_id: message_id.into(),
        in_reply_to: None,
        references: Vec::new(),
        from_addr: Some("wang@example.cn".into()),
        from_name: Some("王小明".into()),
        to: vec!["service@bluebird.example".into()],
        cc: Vec::new(),
        html: None,
        flags: serde_json::json!({}),
        raw: format!("Message-ID: {message_id}\r\n\r\n我想退一盒墨盒。\r\n").into_bytes(),
        files: Vec::new(),
        routing: Some(EmailRouting {
            queue: "support".into(),
            priority: 0,
            skills: Default::default(),
            routed_by: "test".into(),
            overflow: None,
        }),
        outbox: None,
    }
}

#[tokio::test]
async fn emails_stored_in_one_batch_are_each_answered_and_one_bad_email_spoils_no_other() {
    for db in common::databases().await {
        let store = common::store(&db).await;
        let now = now_ms();
        let wang =
            normalize_customer(&input("王小明", &[], &["wang@example.cn"]), None, &cfg()).unwrap();
        let customer = store.create_customer(&wang, now).await.unwrap();

        // A clean batch: one transaction, every email stored with its own contact.
        let a = inbound_email("<batch-a@example.cn>", None, Some(customer));
        let b = inbound_email("<batch-b@example.cn>", None, Some(customer));
        let results = store.store_emails(&[(&a, now), (&b, now)]).await;
        let mut convs = Vec::new();
        for r in results {
            match r.unwrap() {
                EmailStored::Stored {
                    conversation,
                    seq,
                    new_contact,
                    ..
                } => {
                    assert_eq!(seq, 1, "on {}", db.name);
                    assert!(new_contact.is_some(), "a new conversation gets a contact");
                    convs.push(conversation);
                }
                other => panic!("stored, not {other:?} on {}", db.name),
            }
        }
        assert_ne!(convs[0], convs[1]);

        // A reply into the first conversation, an email for a conversation that does not
        // exist (refused by the foreign key), a fresh one, and the same Message-ID twice: the
        // bad one fails alone, the duplicate is stored once, the others are stored.
        let reply = inbound_email("<batch-c@example.cn>", Some(convs[0]), Some(customer));
        let bad = inbound_email("<batch-d@example.cn>", Some(999_999_999), Some(customer));
        let fresh = inbound_email("<batch-e@example.cn>", None, Some(customer));
        let again = inbound_email("<batch-e@example.cn>", None, Some(customer));
        let old = inbound_email("<batch-a@example.cn>", None, Some(customer));
        let results = store
            .store_emails(&[
                (&reply, now),
                (&bad, now),
                (&fresh, now),
                (&again, now),
                (&old, now),
            ])
            .await;
        assert_eq!(results.len(), 5);
        let mut results = results.into_iter();
        match results.next().unwrap().unwrap() {
            EmailStored::Stored {
                conversation,
                seq,
                new_contact,
                open_contact,
                ..
            } => {
                assert_eq!((conversation, seq), (convs[0], 2), "on {}", db.name);
                assert!(new_contact.is_none(), "the open contact takes the reply");
                assert!(open_contact.is_some());
            }
            other => panic!("the reply is stored, not {other:?}"),
        }
        assert!(
            results.next().unwrap().is_err(),
            "the email for a missing conversation fails on {}",
            db.name
        );
        let fresh_conv = match results.next().unwrap().unwrap() {
            EmailStored::Stored { conversation, .. } => conversation,
            other => panic!("the fresh email is stored, not {other:?}"),
        };
        match results.next().unwrap().unwrap() {
            EmailStored::Duplicate { conversation, seq } => {
                assert_eq!((conversation, seq), (fresh_conv, 1), "on {}", db.name)
            }
            other => panic!("the second copy is a duplicate, not {other:?}"),
        }
        match results.next().unwrap().unwrap() {
            EmailStored::Duplicate { conversation, .. } => assert_eq!(conversation, convs[0]),
            other => panic!("an email stored earlier is a duplicate, not {other:?}"),
        }
        for (id, conv) in [
            ("<batch-a@example.cn>", Some(convs[0])),
            ("<batch-b@example.cn>", Some(convs[1])),
            ("<batch-c@example.cn>", Some(convs[0])),
            ("<batch-d@example.cn>", None),
            ("<batch-e@example.cn>", Some(fresh_conv)),
        ] {
            assert_eq!(
                store.email_by_message_id(id).await.unwrap().map(|c| c.0),
                conv,
                "{id} on {}",
                db.name
            );
        }
        let contacts = store
            .list_contacts(&ContactFilter {
                customer_id: Some(customer),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            contacts.len(),
            3,
            "one contact per new conversation on {}",
            db.name
        );

        // The lookup ingest starts with: the duplicate and the customer in one read.
        let (dup, found) = store
            .email_ingest_lookup("<batch-c@example.cn>", Some("wang@example.cn"))
            .await
            .unwrap();
        assert_eq!(dup, Some(convs[0]));
        assert_eq!(
            found.map(|c| (c.id, c.name)),
            Some((customer, "王小明".to_string()))
        );
        let (dup, found) = store
            .email_ingest_lookup("<never@example.cn>", Some("nobody@example.cn"))
            .await
            .unwrap();
        assert!(dup.is_none() && found.is_none());
        let (_, found) = store
            .email_ingest_lookup("<never@example.cn>", None)
            .await
            .unwrap();
        assert!(found.is_none());
    }
}
