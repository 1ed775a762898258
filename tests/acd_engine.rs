//! The ACD engine on a simulated clock: offers, RONA, priorities and aging, skills and
//! overflow, capacity, strategies, sticky agents, hours and limits, bad input, restart, and
//! randomized property runs.

use std::collections::HashMap;

use contact_hub::acd::engine::{
    Acd, AcdError, AgentSpec, CancelReason, Input, Output, RefuseReason,
};
use contact_hub::acd::types::{
    AgentStateKind, Capacity, ContactSpec, OverflowStep, QueueConfig, Skill, SkillSet, Strategy,
};
use contact_hub::domain::{Channel, ContactState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T0: i64 = 1_800_000_000_000; // a Tuesday, 2027-01-15 08:00 UTC

fn skills(list: &[(&str, u8)]) -> HashMap<String, u8> {
    list.iter().map(|(n, l)| (n.to_string(), *l)).collect()
}

fn req(list: &[(&str, u8)]) -> SkillSet {
    SkillSet(
        list.iter()
            .map(|(n, l)| Skill {
                name: n.to_string(),
                level: *l,
            })
            .collect(),
    )
}

fn agent(id: i64, sk: &[(&str, u8)]) -> AgentSpec {
    AgentSpec {
        id,
        skills: skills(sk),
        capacity: Capacity::default(),
    }
}

fn contact(id: i64, channel: Channel, queue: &str, priority: i64, at: i64) -> ContactSpec {
    ContactSpec {
        id,
        channel,
        queue: queue.into(),
        priority,
        enqueued_at: at,
        extra_skills: SkillSet::default(),
        last_agent: None,
    }
}

fn drain(acd: &mut Acd) -> Vec<Output> {
    std::iter::from_fn(|| acd.poll_output()).collect()
}

fn offers(out: &[Output]) -> Vec<(i64, i64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Offer { contact, agent, .. } => Some((*contact, *agent)),
            _ => None,
        })
        .collect()
}

fn login(acd: &mut Acd, now: i64, a: AgentSpec) {
    acd.handle(
        now,
        Input::AgentLogin {
            agent: a,
            available: true,
        },
    )
    .unwrap();
}

#[test]
fn a_contact_is_offered_answered_wrapped_up_and_closed() {
    let mut acd = Acd::new(vec![QueueConfig::simple("support")]);
    login(&mut acd, T0, agent(1, &[]));
    let out = drain(&mut acd);
    assert!(out.contains(&Output::AgentState {
        agent: 1,
        state: AgentStateKind::Available,
        reason: None
    }));
    acd.handle(
        T0 + 1000,
        Input::ContactArrived(contact(10, Channel::Voice, "support", 0, T0 + 1000)),
    )
    .unwrap();
    let out = drain(&mut acd);
    assert_eq!(offers(&out), vec![(10, 1)]);
    assert!(out.contains(&Output::Offer {
        contact: 10,
        agent: 1,
        expires_at: T0 + 21_000
    }));
    assert_eq!(acd.agent_state(1).unwrap().0, AgentStateKind::Reserved);
    acd.handle(
        T0 + 3000,
        Input::OfferAccepted {
            contact: 10,
            agent: 1,
        },
    )
    .unwrap();
    assert_eq!(acd.agent_state(1).unwrap().0, AgentStateKind::Busy);
    acd.handle(
        T0 + 60_000,
        Input::ContactCompleted {
            contact: 10,
            hold_ms: 0,
        },
    )
    .unwrap();
    assert_eq!(acd.agent_state(1).unwrap().0, AgentStateKind::WrapUp);
    drain(&mut acd);
    assert_eq!(
        acd.poll_timeout(),
        Some(T0 + 90_000),
        "wrap-up ends after 30 s"
    );
    acd.handle_timeout(T0 + 90_000);
    let out = drain(&mut acd);
    assert!(out.contains(&Output::ContactState {
        contact: 10,
        state: ContactState::Closed,
        agent: Some(1)
    }));
    assert_eq!(acd.agent_state(1).unwrap().0, AgentStateKind::Available);
    acd.check_invariants().unwrap();
}

#[test]
fn ring_no_answer_returns_the_contact_to_its_place_and_the_agent_goes_not_ready() {
    let mut acd = Acd::new(vec![QueueConfig::simple("q")]);
    login(&mut acd, T0, agent(1, &[]));
    acd.handle(
        T0,
        Input::ContactArrived(contact(10, Channel::Chat, "q", 0, T0)),
    )
    .unwrap();
    acd.handle(
        T0 + 5_000,
        Input::ContactArrived(contact(11, Channel::Chat, "q", 0, T0 + 5_000)),
    )
    .unwrap();
    drain(&mut acd);
    acd.handle_timeout(T0 + 20_000);
    let out = drain(&mut acd);
    assert!(out.contains(&Output::OfferCancelled {
        contact: 10,
        agent: 1,
        reason: CancelReason::Timeout
    }));
    assert_eq!(
        acd.agent_state(1).unwrap(),
        (AgentStateKind::NotReady, Some("no_answer".into()))
    );
    assert_eq!(
        acd.position(10),
        Some(1),
        "back at the head, ahead of the later contact"
    );
    assert_eq!(acd.position(11), Some(2));
    // Accepting the expired offer is refused and changes nothing.
    let err = acd
        .handle(
            T0 + 21_000,
            Input::OfferAccepted {
                contact: 10,
                agent: 1,
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        AcdError::NoSuchOffer {
            contact: 10,
            agent: 1
        }
    );
    assert_eq!(acd.position(10), Some(1));
    login(&mut acd, T0 + 22_000, agent(2, &[]));
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(10, 2)],
        "the next agent gets the first contact"
    );
    acd.check_invariants().unwrap();
}

#[test]
fn higher_priority_first_fifo_within_priority_and_aging_lets_old_contacts_through() {
    let mut q = QueueConfig::simple("q");
    q.aging_per_minute = 1;
    let mut acd = Acd::new(vec![q]);
    acd.handle(
        T0,
        Input::ContactArrived(contact(1, Channel::Email, "q", 0, T0)),
    )
    .unwrap();
    acd.handle(
        T0 + 1_000,
        Input::ContactArrived(contact(2, Channel::Email, "q", 0, T0 + 1_000)),
    )
    .unwrap();
    acd.handle(
        T0 + 2_000,
        Input::ContactArrived(contact(3, Channel::Email, "q", 5, T0 + 2_000)),
    )
    .unwrap();
    // Ten minutes on, contacts 1 and 2 (priority 0) have aged to about +10 and now outrank
    // the fresh priority-9 contact 4; contact 3 (5 + 9.97) is still first.
    acd.handle(
        T0 + 600_000,
        Input::ContactArrived(contact(4, Channel::Email, "q", 9, T0 + 600_000)),
    )
    .unwrap();
    let mut order = Vec::new();
    let mut a = agent(7, &[]);
    a.capacity.email = 1;
    login(&mut acd, T0 + 600_000, a);
    for i in 0..4 {
        let now = T0 + 600_000 + i * 1000;
        let out = drain(&mut acd);
        let (c, _) = offers(&out)[0];
        order.push(c);
        acd.handle(
            now,
            Input::OfferAccepted {
                contact: c,
                agent: 7,
            },
        )
        .unwrap();
        acd.handle(
            now,
            Input::ContactCompleted {
                contact: c,
                hold_ms: 0,
            },
        )
        .unwrap();
        acd.handle(now, Input::WrapUpDone { contact: c }).unwrap();
    }
    // Effective priorities at T0+10 min: c1 = 0+10.0, c2 = 0+9.98, c3 = 5+9.97, c4 = 9+0:
    // the two old priority-0 contacts now outrank the fresh priority-9 one.
    assert_eq!(order, vec![3, 1, 2, 4]);
}

#[test]
fn skills_are_required_and_overflow_widens_them_after_a_wait() {
    let mut q = QueueConfig::simple("billing");
    q.steps = vec![
        OverflowStep {
            after_secs: 0,
            targets: vec![req(&[("billing", 5)])],
        },
        OverflowStep {
            after_secs: 30,
            targets: vec![req(&[("billing", 2)])],
        },
        OverflowStep {
            after_secs: 60,
            targets: vec![req(&[("support", 1)])],
        },
    ];
    let mut acd = Acd::new(vec![q]);
    login(&mut acd, T0, agent(1, &[("billing", 3)]));
    login(&mut acd, T0, agent(2, &[("support", 4)]));
    drain(&mut acd);
    acd.handle(
        T0,
        Input::ContactArrived(contact(9, Channel::Voice, "billing", 0, T0)),
    )
    .unwrap();
    assert!(offers(&drain(&mut acd)).is_empty(), "nobody has billing 5");
    assert_eq!(acd.poll_timeout(), Some(T0 + 30_000));
    acd.handle_timeout(T0 + 30_000);
    let out = drain(&mut acd);
    assert!(out.contains(&Output::Overflowed {
        contact: 9,
        step: 1
    }));
    assert_eq!(
        offers(&out),
        vec![(9, 1)],
        "billing 3 qualifies at the second step"
    );
    acd.handle(
        T0 + 30_000,
        Input::OfferAccepted {
            contact: 9,
            agent: 1,
        },
    )
    .unwrap();

    // A contact needing an extra skill (language) is only for agents who have it.
    let mut c = contact(10, Channel::Voice, "billing", 0, T0 + 31_000);
    c.extra_skills = req(&[("cantonese", 1)]);
    acd.handle(T0 + 31_000, Input::ContactArrived(c)).unwrap();
    acd.handle_timeout(T0 + 31_000 + 60_000);
    let out = drain(&mut acd);
    assert!(
        offers(&out).is_empty(),
        "agent 2 qualifies for step 2 but lacks cantonese: {out:?}"
    );
    login(
        &mut acd,
        T0 + 95_000,
        agent(3, &[("support", 1), ("cantonese", 2)]),
    );
    assert_eq!(offers(&drain(&mut acd)), vec![(10, 3)]);
    acd.check_invariants().unwrap();
}

#[test]
fn capacity_per_channel_and_voice_is_exclusive() {
    let mut acd = Acd::new(vec![QueueConfig::simple("q")]);
    let mut a = agent(1, &[]);
    a.capacity = Capacity {
        voice: 1,
        chat: 3,
        email: 2,
        fax: 0,
        voice_interrupts_digital: false,
    };
    login(&mut acd, T0, a);
    for i in 0..5 {
        acd.handle(
            T0 + i,
            Input::ContactArrived(contact(100 + i, Channel::Chat, "q", 0, T0 + i)),
        )
        .unwrap();
    }
    acd.handle(
        T0 + 10,
        Input::ContactArrived(contact(200, Channel::Voice, "q", 0, T0 + 10)),
    )
    .unwrap();
    acd.handle(
        T0 + 11,
        Input::ContactArrived(contact(300, Channel::Fax, "q", 0, T0 + 11)),
    )
    .unwrap();
    let mut held = Vec::new();
    for step in 0..10 {
        let out = drain(&mut acd);
        let Some(&(c, _)) = offers(&out).first() else {
            break;
        };
        assert_ne!(c, 200, "no voice while chats are in hand (step {step})");
        assert_ne!(c, 300, "no fax capacity");
        acd.handle(
            T0 + 100,
            Input::OfferAccepted {
                contact: c,
                agent: 1,
            },
        )
        .unwrap();
        held.push(c);
        acd.check_invariants().unwrap();
    }
    assert_eq!(
        held,
        vec![100, 101, 102],
        "three chats at most, one offer at a time, in order"
    );
    // Finishing the chats frees the agent for the voice call (older than chats 103/104? no:
    // voice 200 arrived later, but chats 103 and 104 wait for chat capacity).
    for c in held {
        acd.handle(
            T0 + 200,
            Input::ContactCompleted {
                contact: c,
                hold_ms: 0,
            },
        )
        .unwrap();
        acd.handle(T0 + 200, Input::WrapUpDone { contact: c })
            .unwrap();
    }
    let out = drain(&mut acd);
    assert_eq!(
        offers(&out)[0].0,
        103,
        "the oldest contact the agent may take comes first"
    );
    acd.check_invariants().unwrap();
}

#[test]
fn strategies_pick_the_right_agent() {
    let cases = [
        (Strategy::LongestIdle, 1),
        (Strategy::BestSkill, 3),
        (Strategy::RoundRobin, 2),
        (Strategy::LeastOccupied, 2),
    ];
    for (strategy, expected) in cases {
        let mut q = QueueConfig::simple("q");
        q.strategy = strategy;
        q.steps[0].targets = vec![req(&[("sales", 1)])];
        let mut other = QueueConfig::simple("other");
        other.steps[0].targets = vec![req(&[("x", 1)])];
        let mut acd = Acd::new(vec![q, other]);
        for (id, at, sk) in [
            (1, T0, vec![("sales", 2), ("x", 1)]),
            (2, T0 + 1000, vec![("sales", 3)]),
            (3, T0 + 2000, vec![("sales", 9), ("x", 1)]),
        ] {
            let mut a = agent(id, &sk);
            a.capacity.email = 1;
            login(&mut acd, at, a);
        }
        // Agents 1 and 3 handle an email each on another queue (so 2 has the lowest load),
        // and agent 1's was offered before 3's (so 2, never offered, is next in round-robin).
        for (c, a) in [(50, 1), (51, 3)] {
            acd.handle(
                T0 + 3000,
                Input::ContactArrived(contact(c, Channel::Email, "other", 0, T0 + 3000)),
            )
            .unwrap();
            let out = drain(&mut acd);
            assert_eq!(offers(&out), vec![(c, a)], "{strategy:?} setup");
            acd.handle(
                T0 + 3000,
                Input::OfferAccepted {
                    contact: c,
                    agent: a,
                },
            )
            .unwrap();
        }
        acd.handle(
            T0 + 4000,
            Input::ContactArrived(contact(60, Channel::Chat, "q", 0, T0 + 4000)),
        )
        .unwrap();
        let out = drain(&mut acd);
        assert_eq!(offers(&out), vec![(60, expected)], "{strategy:?}");
    }
}

#[test]
fn a_returning_customer_waits_briefly_for_their_last_agent() {
    let mut q = QueueConfig::simple("q");
    q.sticky_secs = 30;
    let mut acd = Acd::new(vec![q]);
    login(&mut acd, T0, agent(1, &[]));
    login(&mut acd, T0, agent(2, &[]));
    acd.handle(
        T0,
        Input::ContactArrived(contact(1, Channel::Voice, "q", 0, T0)),
    )
    .unwrap();
    let (_, busy) = offers(&drain(&mut acd))[0];
    acd.handle(
        T0,
        Input::OfferAccepted {
            contact: 1,
            agent: busy,
        },
    )
    .unwrap();
    let free = 3 - busy;
    // The customer's last agent is busy: the contact waits for them although `free` is idle.
    let mut c = contact(2, Channel::Voice, "q", 0, T0 + 1000);
    c.last_agent = Some(busy);
    acd.handle(T0 + 1000, Input::ContactArrived(c)).unwrap();
    assert!(offers(&drain(&mut acd)).is_empty());
    acd.handle(
        T0 + 5000,
        Input::ContactCompleted {
            contact: 1,
            hold_ms: 0,
        },
    )
    .unwrap();
    acd.handle(T0 + 6000, Input::WrapUpDone { contact: 1 })
        .unwrap();
    assert_eq!(
        offers(&drain(&mut acd)),
        vec![(2, busy)],
        "sticky agent gets it when free"
    );

    // Not free within the sticky time: anyone may take it.
    acd.handle(
        T0 + 7000,
        Input::OfferAccepted {
            contact: 2,
            agent: busy,
        },
    )
    .unwrap();
    let mut c = contact(3, Channel::Voice, "q", 0, T0 + 8000);
    c.last_agent = Some(busy);
    acd.handle(T0 + 8000, Input::ContactArrived(c)).unwrap();
    acd.handle_timeout(T0 + 38_000);
    assert_eq!(offers(&drain(&mut acd)), vec![(3, free)]);
    acd.check_invariants().unwrap();
}

#[test]
fn closed_hours_full_queues_and_long_waits_are_refused_with_the_queue_handling() {
    let mut q = QueueConfig::simple("q");
    q.hours.utc_offset_minutes = 480; // 08:00 UTC = 16:00 in Beijing
    q.hours.week[4] = vec![(9 * 60, 12 * 60)]; // Friday 09:00-12:00 only
    q.closed_handling = contact_hub::acd::types::ClosedHandling::Callback;
    let mut full = QueueConfig::simple("full");
    full.max_queue_length = Some(1);
    full.max_wait_secs = Some(120);
    let mut acd = Acd::new(vec![q, full]);
    acd.handle(
        T0,
        Input::ContactArrived(contact(1, Channel::Voice, "q", 0, T0)),
    )
    .unwrap();
    let out = drain(&mut acd);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Refused {
                contact: 1,
                reason: RefuseReason::Closed,
                handling: contact_hub::acd::types::ClosedHandling::Callback
            }
        )),
        "{out:?}"
    );
    acd.handle(
        T0,
        Input::ContactArrived(contact(2, Channel::Voice, "full", 0, T0)),
    )
    .unwrap();
    acd.handle(
        T0,
        Input::ContactArrived(contact(3, Channel::Voice, "full", 0, T0)),
    )
    .unwrap();
    let out = drain(&mut acd);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Refused {
            contact: 3,
            reason: RefuseReason::QueueFull,
            ..
        }
    )));
    acd.handle(
        T0,
        Input::ContactArrived(contact(4, Channel::Voice, "nowhere", 0, T0)),
    )
    .unwrap();
    assert!(drain(&mut acd).iter().any(|o| matches!(
        o,
        Output::Refused {
            contact: 4,
            reason: RefuseReason::UnknownQueue,
            ..
        }
    )));
    acd.handle_timeout(T0 + 120_000);
    let out = drain(&mut acd);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Refused {
                contact: 2,
                reason: RefuseReason::MaxWait,
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(acd.waiting(), 0);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut acd = Acd::new(vec![QueueConfig::simple("q")]);
    assert_eq!(
        acd.handle(T0, Input::AgentLogout(5)),
        Err(AcdError::UnknownAgent(5))
    );
    assert_eq!(
        acd.handle(T0, Input::ContactAbandoned(5)),
        Err(AcdError::UnknownContact(5))
    );
    login(&mut acd, T0, agent(1, &[]));
    assert_eq!(
        acd.handle(
            T0,
            Input::AgentLogin {
                agent: agent(1, &[]),
                available: true
            }
        ),
        Err(AcdError::AlreadyLoggedIn(1))
    );
    acd.handle(
        T0,
        Input::ContactArrived(contact(9, Channel::Voice, "q", 0, T0)),
    )
    .unwrap();
    assert_eq!(
        acd.handle(
            T0,
            Input::ContactArrived(contact(9, Channel::Voice, "q", 0, T0))
        ),
        Err(AcdError::DuplicateContact(9))
    );
    assert_eq!(
        acd.handle(
            T0,
            Input::OfferAccepted {
                contact: 9,
                agent: 2
            }
        ),
        Err(AcdError::NoSuchOffer {
            contact: 9,
            agent: 2
        })
    );
    assert!(matches!(
        acd.handle(
            T0,
            Input::ContactCompleted {
                contact: 9,
                hold_ms: 0
            }
        ),
        Err(AcdError::NotAllowed(_))
    ));
    assert!(matches!(
        acd.handle(T0, Input::WrapUpDone { contact: 9 }),
        Err(AcdError::NotAllowed(_))
    ));
    acd.handle(
        T0,
        Input::OfferAccepted {
            contact: 9,
            agent: 1,
        },
    )
    .unwrap();
    assert!(
        matches!(
            acd.handle(T0, Input::AgentLogout(1)),
            Err(AcdError::NotAllowed(_))
        ),
        "cannot log out holding a call"
    );
    assert!(matches!(
        acd.handle(T0, Input::ContactAbandoned(9)),
        Err(AcdError::NotAllowed(_))
    ));
    assert_eq!(acd.agent_state(1).unwrap().0, AgentStateKind::Busy);
    acd.check_invariants().unwrap();
}

#[test]
fn a_rejected_offer_goes_to_another_agent_not_back_to_the_same() {
    let mut acd = Acd::new(vec![QueueConfig::simple("q")]);
    login(&mut acd, T0, agent(1, &[]));
    acd.handle(
        T0,
        Input::ContactArrived(contact(9, Channel::Chat, "q", 0, T0)),
    )
    .unwrap();
    drain(&mut acd);
    acd.handle(
        T0 + 1000,
        Input::OfferRejected {
            contact: 9,
            agent: 1,
        },
    )
    .unwrap();
    let out = drain(&mut acd);
    assert!(
        offers(&out).is_empty(),
        "not offered again to the agent who declined"
    );
    assert_eq!(acd.agent_state(1).unwrap().0, AgentStateKind::Available);
    login(&mut acd, T0 + 2000, agent(2, &[]));
    assert_eq!(offers(&drain(&mut acd)), vec![(9, 2)]);
}

#[test]
fn a_contact_declined_by_the_only_free_agent_does_not_hold_up_the_ones_behind_it() {
    let mut acd = Acd::new(vec![QueueConfig::simple("support")]);
    login(&mut acd, T0, agent(1, &[("support", 3)]));
    acd.handle(
        T0,
        Input::ContactArrived(contact(10, Channel::Chat, "support", 0, T0)),
    )
    .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(10, 1)]);
    acd.handle(
        T0 + 1,
        Input::OfferRejected {
            contact: 10,
            agent: 1,
        },
    )
    .unwrap();
    drain(&mut acd);
    // A newer contact arrives while the declined one heads the lane: it is offered at once.
    acd.handle(
        T0 + 2,
        Input::ContactArrived(contact(11, Channel::Chat, "support", 0, T0 + 2)),
    )
    .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(11, 1)]);
    assert_eq!(
        acd.position(10),
        Some(1),
        "the declined contact keeps its place for others"
    );
    acd.check_invariants().unwrap();
}

#[test]
fn a_withdrawn_contact_leaves_its_queue_closed_not_abandoned() {
    let mut acd = Acd::new(vec![QueueConfig::simple("support")]);
    acd.handle(
        T0,
        Input::ContactArrived(contact(20, Channel::Voice, "support", 0, T0)),
    )
    .unwrap();
    acd.handle(
        T0 + 1,
        Input::ContactArrived(contact(21, Channel::Voice, "support", 0, T0 + 1)),
    )
    .unwrap();
    drain(&mut acd);
    acd.handle(T0 + 2, Input::ContactWithdrawn(20)).unwrap();
    let out = drain(&mut acd);
    assert!(out.contains(&Output::ContactState {
        contact: 20,
        state: ContactState::Closed,
        agent: None
    }));
    assert!(!out.iter().any(|o| matches!(
        o,
        Output::Stat(contact_hub::acd::types::StatEvent::Abandoned { .. })
    )));
    assert_eq!(acd.position(21), Some(1));
    assert_eq!(
        acd.handle(T0 + 3, Input::ContactWithdrawn(20)),
        Err(AcdError::UnknownContact(20))
    );
    acd.check_invariants().unwrap();
}

#[test]
fn a_restart_restores_order_and_waits_and_offers_nothing_twice() {
    let mut q = QueueConfig::simple("q");
    q.steps.push(OverflowStep {
        after_secs: 60,
        targets: vec![req(&[("any", 1)])],
    });
    let queued: Vec<ContactSpec> = (0..5)
        .map(|i| contact(i, Channel::Email, "q", i % 2, T0 + i * 1000))
        .collect();
    let mut before = Acd::new(vec![q.clone()]);
    for c in &queued {
        before
            .handle(c.enqueued_at, Input::ContactArrived(c.clone()))
            .unwrap();
    }
    let order_before: Vec<_> = (0..5).map(|i| before.position(i)).collect();
    // The hub restarts 90 s later and feeds the stored queue back in any order.
    let mut after = Acd::new(vec![q]);
    for c in queued.iter().rev() {
        after
            .handle(T0 + 90_000, Input::ContactArrived(c.clone()))
            .unwrap();
    }
    let order_after: Vec<_> = (0..5).map(|i| after.position(i)).collect();
    assert_eq!(order_before, order_after);
    let out = drain(&mut after);
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Output::Offer { .. }))
            .count(),
        0
    );
    // The contacts kept their wait: they are already at the 60 s overflow step.
    login(&mut after, T0 + 90_000, agent(1, &[("any", 1)]));
    assert_eq!(
        offers(&drain(&mut after)),
        vec![(1, 1)],
        "priority 1 first, then by enqueue time"
    );
}

/// Random operations; after each one the engine's invariants hold, and at the end every
/// contact ended exactly once.
#[test]
fn property_no_double_offers_no_over_capacity_fifo_and_every_contact_ends_once() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut queues = vec![QueueConfig::simple("a"), QueueConfig::simple("b")];
        queues[1].steps = vec![
            OverflowStep {
                after_secs: 0,
                targets: vec![req(&[("b", 2)])],
            },
            OverflowStep {
                after_secs: 20,
                targets: vec![req(&[("b", 1)])],
            },
        ];
        queues[0].offer_timeout_secs = 10;
        queues[0].wrap_up_secs = 5;
        let mut acd = Acd::new(queues);
        let mut now = T0;
        let mut next_contact = 1;
        let mut ended: HashMap<i64, u32> = HashMap::new();
        let mut created = Vec::new();
        let mut answered_order: Vec<(i64, i64)> = Vec::new(); // (enqueued_at, id) per answer in queue "a" chat, prio 0
        for _ in 0..400 {
            now += rng.random_range(0..4000);
            acd.handle_timeout(now);
            let op = rng.random_range(0..10);
            let agent_id = rng.random_range(1..6);
            if created.is_empty() && op >= 6 {
                continue;
            }
            let result = match op {
                0..=2 => {
                    let channel =
                        [Channel::Voice, Channel::Chat, Channel::Email][rng.random_range(0..3)];
                    let queue = if rng.random_bool(0.5) { "a" } else { "b" };
                    let c = contact(next_contact, channel, queue, 0, now);
                    created.push(next_contact);
                    next_contact += 1;
                    acd.handle(now, Input::ContactArrived(c))
                }
                3 => {
                    let lvl = rng.random_range(1..3);
                    acd.handle(
                        now,
                        Input::AgentLogin {
                            agent: agent(agent_id, &[("b", lvl)]),
                            available: rng.random_bool(0.8),
                        },
                    )
                }
                4 => acd.handle(now, Input::AgentLogout(agent_id)),
                5 => acd.handle(
                    now,
                    Input::AgentNotReady {
                        agent: agent_id,
                        reason: rng.random_bool(0.3).then(|| "break".to_string()),
                    },
                ),
                6 => {
                    // Accept whatever is offered to this agent.
                    let offered = created
                        .iter()
                        .copied()
                        .find(|c| acd.contact_agent(*c) == Some(agent_id));
                    match offered {
                        Some(c) => {
                            let r = acd.handle(
                                now,
                                Input::OfferAccepted {
                                    contact: c,
                                    agent: agent_id,
                                },
                            );
                            if r.is_ok() {
                                answered_order.push((c, agent_id));
                            }
                            r
                        }
                        None => Ok(()),
                    }
                }
                7 => {
                    let c = created[rng
                        .random_range(0..created.len().max(1))
                        .min(created.len().saturating_sub(1))];
                    acd.handle(
                        now,
                        Input::ContactCompleted {
                            contact: c,
                            hold_ms: 0,
                        },
                    )
                }
                8 => {
                    let c = created[rng
                        .random_range(0..created.len().max(1))
                        .min(created.len().saturating_sub(1))];
                    acd.handle(now, Input::ContactAbandoned(c))
                }
                _ => {
                    let c = created[rng
                        .random_range(0..created.len().max(1))
                        .min(created.len().saturating_sub(1))];
                    acd.handle(
                        now,
                        Input::OfferRejected {
                            contact: c,
                            agent: agent_id,
                        },
                    )
                }
            };
            let _ = result; // errors are expected for random input; the state must stay sound
            for o in drain(&mut acd) {
                match o {
                    Output::ContactState {
                        contact,
                        state: ContactState::Closed | ContactState::Abandoned,
                        ..
                    }
                    | Output::Refused { contact, .. } => *ended.entry(contact).or_default() += 1,
                    _ => {}
                }
            }
            if let Err(e) = acd.check_invariants() {
                panic!("seed {seed}: {e}");
            }
        }
        for (c, n) in &ended {
            assert_eq!(*n, 1, "seed {seed}: contact {c} ended {n} times");
        }
        let _ = answered_order;
    }
}

/// FIFO: with equal priority and skills, contacts are answered in arrival order.
#[test]
fn property_fifo_within_equal_priority_and_skills() {
    for seed in 0..20u64 {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let mut acd = Acd::new(vec![QueueConfig::simple("q")]);
        let mut now = T0;
        for id in 0..50 {
            now += rng.random_range(0..3000);
            acd.handle(
                now,
                Input::ContactArrived(contact(id, Channel::Email, "q", 0, now)),
            )
            .unwrap();
        }
        for a in 1..=4 {
            let mut spec = agent(a, &[]);
            spec.capacity.email = 1;
            login(&mut acd, now, spec);
        }
        let mut served = Vec::new();
        for _ in 0..200 {
            now += rng.random_range(1..5000);
            acd.handle_timeout(now);
            for o in drain(&mut acd) {
                if let Output::Offer { contact, agent, .. } = o {
                    served.push(contact);
                    acd.handle(now, Input::OfferAccepted { contact, agent })
                        .unwrap();
                    acd.handle(
                        now,
                        Input::ContactCompleted {
                            contact,
                            hold_ms: 0,
                        },
                    )
                    .unwrap();
                    acd.handle(
                        now + rng.random_range(0..1000),
                        Input::WrapUpDone { contact },
                    )
                    .ok();
                }
            }
        }
        let mut sorted = served.clone();
        sorted.sort();
        assert_eq!(served, sorted, "seed {seed}");
        assert_eq!(served.len(), 50);
    }
}

#[test]
fn a_routing_rule_can_give_a_contact_its_own_overflow() {
    let mut q = QueueConfig::simple("vip");
    q.steps[0].targets = vec![req(&[("vip", 1)])];
    let mut acd = Acd::new(vec![q]);
    login(&mut acd, T0, agent(1, &[("support", 2)]));
    // The night rule: after 30 s anyone may answer this contact; the queue itself never widens.
    let own = vec![
        OverflowStep {
            after_secs: 0,
            targets: vec![req(&[("vip", 1)])],
        },
        OverflowStep {
            after_secs: 30,
            targets: vec![SkillSet::default()],
        },
    ];
    acd.handle(
        T0,
        Input::ContactRouted {
            spec: contact(1, Channel::Voice, "vip", 0, T0),
            overflow: Some(own),
        },
    )
    .unwrap();
    acd.handle(
        T0,
        Input::ContactArrived(contact(2, Channel::Voice, "vip", 0, T0)),
    )
    .unwrap();
    assert!(offers(&drain(&mut acd)).is_empty());
    acd.handle_timeout(T0 + 30_000);
    let out = drain(&mut acd);
    assert!(out.contains(&Output::Overflowed {
        contact: 1,
        step: 1
    }));
    assert_eq!(
        offers(&out),
        vec![(1, 1)],
        "only the contact with its own overflow widens"
    );
    acd.handle(
        T0 + 31_000,
        Input::OfferAccepted {
            contact: 1,
            agent: 1,
        },
    )
    .unwrap();
    acd.handle(
        T0 + 32_000,
        Input::ContactCompleted {
            contact: 1,
            hold_ms: 0,
        },
    )
    .unwrap();
    acd.handle(T0 + 32_000, Input::WrapUpDone { contact: 1 })
        .unwrap();
    assert!(
        offers(&drain(&mut acd)).is_empty(),
        "contact 2 still needs a vip agent"
    );
    acd.check_invariants().unwrap();
}

#[test]
fn preferred_skills_win_the_offer_and_queues_can_cap_contacts_per_agent() {
    let mut q = QueueConfig::simple("q");
    q.preferred_skills = req(&[("cantonese", 1)]);
    q.max_per_agent = Some(1);
    let mut acd = Acd::new(vec![q]);
    login(&mut acd, T0, agent(1, &[]));
    login(&mut acd, T0 + 1000, agent(2, &[("cantonese", 3)]));
    drain(&mut acd);
    // Agent 1 has been idle longer, but agent 2 has the preferred skill.
    acd.handle(
        T0 + 2000,
        Input::ContactArrived(contact(1, Channel::Chat, "q", 0, T0 + 2000)),
    )
    .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(1, 2)]);
    acd.handle(
        T0 + 2000,
        Input::OfferAccepted {
            contact: 1,
            agent: 2,
        },
    )
    .unwrap();
    // Agent 2 could hold 3 chats, but this queue allows one each: the next goes to agent 1.
    acd.handle(
        T0 + 3000,
        Input::ContactArrived(contact(2, Channel::Chat, "q", 0, T0 + 3000)),
    )
    .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(2, 1)]);
    acd.handle(
        T0 + 3000,
        Input::OfferAccepted {
            contact: 2,
            agent: 1,
        },
    )
    .unwrap();
    acd.handle(
        T0 + 4000,
        Input::ContactArrived(contact(3, Channel::Chat, "q", 0, T0 + 4000)),
    )
    .unwrap();
    assert!(
        offers(&drain(&mut acd)).is_empty(),
        "both agents are at the queue's cap"
    );
    acd.check_invariants().unwrap();
    acd.handle(
        T0 + 5000,
        Input::ContactCompleted {
            contact: 1,
            hold_ms: 0,
        },
    )
    .unwrap();
    acd.handle(T0 + 5000, Input::WrapUpDone { contact: 1 })
        .unwrap();
    assert_eq!(offers(&drain(&mut acd)), vec![(3, 2)]);
    acd.check_invariants().unwrap();
}

#[test]
fn waiting_contacts_know_their_place_and_expected_wait() {
    let mut acd = Acd::new(vec![QueueConfig::simple("q")]);
    let mut a = agent(1, &[]);
    a.capacity.email = 1;
    login(&mut acd, T0, a);
    for i in 0..4 {
        acd.handle(
            T0 + i,
            Input::ContactArrived(contact(i, Channel::Email, "q", 0, T0 + i)),
        )
        .unwrap();
    }
    // Contact 0 is offered; 1..3 wait. No handle time yet: 180 s per contact, one agent.
    assert_eq!(acd.expected_wait(1, T0 + 10), Some((1, 180_000)));
    assert_eq!(acd.expected_wait(3, T0 + 10), Some((3, 540_000)));
    acd.handle(
        T0 + 1000,
        Input::OfferAccepted {
            contact: 0,
            agent: 1,
        },
    )
    .unwrap();
    acd.handle(
        T0 + 60_000,
        Input::ContactCompleted {
            contact: 0,
            hold_ms: 0,
        },
    )
    .unwrap();
    acd.handle(T0 + 61_000, Input::WrapUpDone { contact: 0 })
        .unwrap();
    // Handled in 61 s: contact 2 is now second in line.
    assert_eq!(acd.expected_wait(2, T0 + 61_000), Some((1, 61_000)));
    assert_eq!(
        acd.expected_wait(0, T0 + 61_000),
        None,
        "finished contacts have no place"
    );
}
