//! Real SIPp peers against the endpoint on 127.0.0.1.

mod common;
use channel_sip::*;
use common::*;

fn target(handle: &SipHandle) -> String {
    handle.local_addr().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_answered_200_with_allow_and_accept() {
    let (handle, rx) = start(base_config()).await;
    let _log = hub(handle.clone(), rx, Script::Nothing);
    let out = run_sipp("options.xml", &target(&handle), 3, &[]).await;
    assert!(out.status.success(), "sipp failed");
    assert_eq!(sipp_successful(&out), Some(3));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_invites_get_400_with_warning() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let out = run_sipp("malformed.xml", &target(&handle), 2, &[]).await;
    assert!(out.status.success(), "sipp failed");
    assert_eq!(
        handle.refused_messages().0,
        4,
        "four 400s from the boundary"
    );
    assert!(
        events(&log).is_empty(),
        "no call reached the hub: {:?}",
        events(&log)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_methods_get_405_and_501() {
    let (handle, rx) = start(base_config()).await;
    let _log = hub(handle.clone(), rx, Script::Nothing);
    let out = run_sipp("unsupported.xml", &target(&handle), 1, &[]).await;
    assert!(out.status.success(), "sipp failed");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancel_while_ringing_gets_487_and_ends_the_leg() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Ring);
    let out = run_sipp("cancel.xml", &target(&handle), 3, &["-l", "1"]).await;
    assert!(out.status.success(), "sipp failed");
    wait_for(&log, "three cancelled legs", |evs| {
        evs.iter()
            .filter(|e| {
                matches!(
                    e,
                    SipEvent::Ended {
                        by: Party::Remote,
                        cause: EndCause::Cancelled,
                        ..
                    }
                )
            })
            .count()
            == 3
    })
    .await;
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_calls_end_on_caller_bye_and_leave_nothing_behind() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let n = 20;
    let out = run_sipp(
        "call_bye.xml",
        &target(&handle),
        n,
        &["-r", "10", "-l", "5"],
    )
    .await;
    assert!(out.status.success(), "sipp failed");
    assert_eq!(sipp_successful(&out), Some(n as u64));
    wait_for(&log, "every leg ended by the caller's BYE", |evs| {
        evs.iter()
            .filter(|e| {
                matches!(
                    e,
                    SipEvent::Ended {
                        by: Party::Remote,
                        cause: EndCause::Normal,
                        ..
                    }
                )
            })
            .count()
            == n as usize
    })
    .await;
    let incoming: Vec<_> = events(&log)
        .into_iter()
        .filter_map(|e| match e {
            SipEvent::IncomingCall {
                origin,
                from,
                remote_sdp,
                ..
            } => Some((origin, from, remote_sdp)),
            _ => None,
        })
        .collect();
    assert_eq!(incoming.len(), n as usize);
    let (origin, from, sdp) = &incoming[0];
    assert_eq!(
        origin,
        &CallOrigin::Trunk {
            name: "loopback-carrier".into()
        }
    );
    assert_eq!(from.user.as_deref(), Some("+8613800138000"));
    assert_eq!(from.display.as_deref(), Some("Caller"));
    assert!(sdp.as_deref().unwrap().contains("m=audio"));
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_unknown_sources_get_403() {
    let mut config = base_config();
    config.inbound_trunks[0].allow = vec!["192.0.2.0/24".parse().unwrap()];
    let (handle, rx) = start(config).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let out = run_sipp("call_bye.xml", &target(&handle), 1, &[]).await;
    assert!(!out.status.success(), "the call must fail");
    assert_eq!(sipp_successful(&out).unwrap_or(0), 0);
    assert!(events(&log).is_empty());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_phone_registers_with_digest_and_unregisters() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let out = run_sipp(
        "register.xml",
        &target(&handle),
        1,
        &["-au", "1001", "-ap", "pw1001"],
    )
    .await;
    assert!(out.status.success(), "sipp failed");
    wait_for(&log, "registered then unregistered", |evs| {
        evs.iter()
            .any(|e| matches!(e, SipEvent::Unregistered { user, .. } if user == "1001"))
    })
    .await;
    let evs = events(&log);
    assert!(
        matches!(
            &evs[0],
            SipEvent::Registered { user, agent_id, contact } if user == "1001" && agent_id == "agent-1" && contact.starts_with("sip:1001@127.0.0.1")
        ),
        "{evs:?}"
    );
    assert!(handle.registered_contacts("1001").is_empty());
    // A wrong password never registers.
    let out = run_sipp(
        "register.xml",
        &target(&handle),
        1,
        &["-au", "1001", "-ap", "wrong"],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(events(&log).len(), 2, "{:?}", events(&log));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originated_call_pracks_a_reliable_180_then_hangs_up() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let port = free_port();
    let sipp = {
        let port = port.to_string();
        tokio::spawn(async move {
            let sipp = sipp_binary();
            let control = free_port().to_string();
            let media = free_port().to_string();
            tokio::process::Command::new(sipp)
                .args(["-sf", scenario("uas_prack.xml").to_str().unwrap()])
                .args([
                    "-m",
                    "1",
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-cp",
                    &control,
                    "-mp",
                    &media,
                ])
                .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
                .kill_on_drop(true)
                .output()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let leg = handle
        .originate(
            Target::Uri(format!("sip:phone@127.0.0.1:{port}")),
            Caller {
                display: Some("Hub".into()),
                user: "4000".into(),
            },
            SDP.to_string(),
        )
        .await
        .unwrap();
    wait_for(&log, "answered", |evs| {
        evs.iter()
            .any(|e| matches!(e, SipEvent::Answered { leg: l, .. } if *l == leg))
    })
    .await;
    let evs = events(&log);
    assert!(
        evs.contains(&SipEvent::Progress {
            leg,
            code: 180,
            early_sdp: None
        }),
        "{evs:?}"
    );
    match evs.iter().find(|e| matches!(e, SipEvent::Answered { .. })) {
        Some(SipEvent::Answered { remote_sdp, .. }) => {
            assert!(remote_sdp.as_deref().unwrap().contains("m=audio"))
        }
        _ => unreachable!(),
    }
    handle.hangup(leg).await.unwrap();
    let out = sipp.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_call_dtmf_info_remote_offer_and_hold_reinvite() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::MidCall);
    let out = run_sipp("midcall.xml", &target(&handle), 1, &[]).await;
    assert!(out.status.success(), "sipp failed");
    wait_for(&log, "the caller's BYE", |evs| {
        evs.iter().any(|e| {
            matches!(
                e,
                SipEvent::Ended {
                    by: Party::Remote,
                    cause: EndCause::Normal,
                    ..
                }
            )
        })
    })
    .await;
    let evs = events(&log);
    let leg = match &evs[0] {
        SipEvent::IncomingCall { leg, .. } => *leg,
        other => panic!("{other:?}"),
    };
    assert!(
        evs.contains(&SipEvent::Dtmf {
            leg,
            digit: '5',
            duration_ms: Some(160)
        }),
        "{evs:#?}"
    );
    assert!(evs.iter().any(|e| matches!(e, SipEvent::RemoteOffer { leg: l, sdp, .. } if *l == leg && sdp.contains("a=sendonly"))));
    assert!(evs.iter().any(|e| matches!(e, SipEvent::ReinviteAnswered { leg: l, remote_sdp: Some(sdp) } if *l == leg && sdp.contains("a=recvonly"))), "{evs:#?}");
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_registers_with_digest_and_calls_out_through_it() {
    let carrier_port = free_port();
    let carrier = |scenario_name: &'static str| {
        tokio::spawn(async move {
            let control = free_port().to_string();
            let media = free_port().to_string();
            tokio::process::Command::new(sipp_binary())
                .args(["-sf", scenario(scenario_name).to_str().unwrap()])
                .args([
                    "-m",
                    "1",
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &carrier_port.to_string(),
                    "-cp",
                    &control,
                    "-mp",
                    &media,
                ])
                .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
                .kill_on_drop(true)
                .output()
                .await
                .unwrap()
        })
    };
    // SIPp tells calls apart by Call-ID: one process for the REGISTER, one for the INVITE.
    let registrar = carrier("carrier_register.xml");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let config = SipConfig::from_toml(&format!(
        r#"
listen = "127.0.0.1:0"
t1_ms = 50

[[outbound_trunk]]
name = "carrier"
proxy = "127.0.0.1:{carrier_port}"
from_domain = "carrier.example"
username = "hub"
password = "secret"
register = true
register_expires = 600
default_caller = "+861012345678"
"#
    ))
    .unwrap();
    let (handle, rx) = start(config).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    wait_for(&log, "trunk registration", |evs| {
        evs.contains(&SipEvent::TrunkRegistered {
            trunk: "carrier".into(),
            expires: 120,
        })
    })
    .await;
    let out = registrar.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let sipp = carrier("carrier_call.xml");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let leg = handle
        .originate(
            Target::Trunk {
                trunk: "carrier".into(),
                number: "+8613800138000".into(),
            },
            Caller::default(),
            SDP.to_string(),
        )
        .await
        .unwrap();
    wait_for(&log, "answered through the trunk", |evs| {
        evs.iter()
            .any(|e| matches!(e, SipEvent::Answered { leg: l, .. } if *l == leg))
    })
    .await;
    handle.hangup(leg).await.unwrap();
    let out = sipp.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Unknown trunks and bad numbers are refused before anything is sent.
    assert!(matches!(
        handle
            .originate(
                Target::Trunk {
                    trunk: "nope".into(),
                    number: "1".into()
                },
                Caller::default(),
                SDP.into()
            )
            .await,
        Err(SipError::UnknownTrunk(_))
    ));
    assert!(matches!(
        handle
            .originate(
                Target::Trunk {
                    trunk: "carrier".into(),
                    number: "1@evil".into()
                },
                Caller::default(),
                SDP.into()
            )
            .await,
        Err(SipError::BadTarget(_))
    ));
    assert!(matches!(
        handle
            .originate(Target::User("1001".into()), Caller::default(), SDP.into())
            .await,
        Err(SipError::NotRegistered(_))
    ));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_rejects_with_486_after_early_media() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Busy);
    let out = run_sipp("call_rejected.xml", &target(&handle), 2, &["-l", "1"]).await;
    assert!(out.status.success(), "sipp failed");
    wait_for(&log, "two rejected legs", |evs| {
        evs.iter()
            .filter(|e| {
                matches!(
                    e,
                    SipEvent::Ended {
                        by: Party::Local,
                        cause: EndCause::Rejected(486),
                        ..
                    }
                )
            })
            .count()
            == 2
    })
    .await;
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originated_call_cancelled_while_ringing_and_busy_callee() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let (port, ringing_phone) = sipp_uas("uas_ring_cancel.xml");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let leg = handle
        .originate(
            Target::Uri(format!("sip:1001@127.0.0.1:{port}")),
            Caller::default(),
            SDP.into(),
        )
        .await
        .unwrap();
    wait_for(&log, "ringing", |evs| {
        evs.contains(&SipEvent::Progress {
            leg,
            code: 180,
            early_sdp: None,
        })
    })
    .await;
    handle.hangup(leg).await.unwrap();
    let out = ringing_phone.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ended: Vec<_> = events(&log)
        .into_iter()
        .filter(|e| matches!(e, SipEvent::Ended { .. } | SipEvent::Failed { .. }))
        .collect();
    assert_eq!(
        ended,
        vec![SipEvent::Ended {
            leg,
            by: Party::Local,
            cause: EndCause::Cancelled
        }]
    );

    let (port, busy_phone) = sipp_uas("uas_busy.xml");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let leg = handle
        .originate(
            Target::Uri(format!("sip:1002@127.0.0.1:{port}")),
            Caller::default(),
            SDP.into(),
        )
        .await
        .unwrap();
    wait_for(&log, "busy", |evs| {
        evs.contains(&SipEvent::Failed { leg, code: 486 })
    })
    .await;
    assert!(busy_phone.await.unwrap().status.success());
    assert_eq!(
        events(&log)
            .iter()
            .filter(|e| matches!(e, SipEvent::Failed { leg: l, .. } if *l == leg))
            .count(),
        1,
        "one terminal event"
    );
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringing_all_contacts_first_answer_wins_the_other_is_cancelled() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let (port_a, port_b) = (free_port(), free_port());
    for port in [port_a, port_b] {
        let out = run_sipp_from(
            "register_only.xml",
            &target(&handle),
            1,
            &["-au", "1001", "-ap", "pw1001"],
            port,
        )
        .await;
        assert!(out.status.success(), "register from {port}");
    }
    assert_eq!(handle.registered_contacts("1001").len(), 2);
    let (_, phone_a) = sipp_uas_on("uas_ring_cancel.xml", port_a);
    let (_, phone_b) = sipp_uas_on("uas_answer.xml", port_b);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let leg = handle
        .originate(
            Target::UserAll("1001".into()),
            Caller::default(),
            SDP.into(),
        )
        .await
        .unwrap();
    wait_for(&log, "answered by phone B", |evs| {
        evs.iter()
            .any(|e| matches!(e, SipEvent::Answered { leg: l, .. } if *l == leg))
    })
    .await;
    let out_a = phone_a.await.unwrap();
    assert!(
        out_a.status.success(),
        "phone A was not cancelled: {}",
        String::from_utf8_lossy(&out_a.stdout)
    );
    assert_eq!(
        handle.leg_info(leg).map(|i| i.state),
        Some(LegState::Established)
    );
    handle.hangup(leg).await.unwrap();
    let out_b = phone_b.await.unwrap();
    assert!(
        out_b.status.success(),
        "{}",
        String::from_utf8_lossy(&out_b.stdout)
    );
    // The hub saw one leg: progress, one answer, one end.
    let evs: Vec<_> = events(&log)
        .into_iter()
        .filter(|e| !matches!(e, SipEvent::Registered { .. }))
        .collect();
    assert!(
        evs.iter().all(|e| match e {
            SipEvent::Progress { leg: l, .. }
            | SipEvent::Answered { leg: l, .. }
            | SipEvent::Ended { leg: l, .. } => *l == leg,
            _ => false,
        }),
        "{evs:#?}"
    );
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, SipEvent::Answered { .. }))
            .count(),
        1
    );
    assert_eq!(
        evs.last(),
        Some(&SipEvent::Ended {
            leg,
            by: Party::Local,
            cause: EndCause::Normal
        })
    );
    wait_clean(&handle).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_requiring_100rel_gets_420() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Answer);
    let out = run_sipp("require_100rel.xml", &target(&handle), 1, &[]).await;
    assert!(out.status.success(), "sipp failed");
    assert!(events(&log).is_empty());
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hangs_up_established_calls() {
    let (handle, rx) = start(base_config()).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let (port, phone) = sipp_uas("uas_answer.xml");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let leg = handle
        .originate(
            Target::Uri(format!("sip:1001@127.0.0.1:{port}")),
            Caller::default(),
            SDP.into(),
        )
        .await
        .unwrap();
    wait_for(&log, "answered", |evs| {
        evs.iter().any(|e| matches!(e, SipEvent::Answered { .. }))
    })
    .await;
    handle.shutdown().await;
    let out = phone.await.unwrap();
    assert!(
        out.status.success(),
        "the phone got no BYE: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(events(&log).contains(&SipEvent::Ended {
        leg,
        by: Party::Local,
        cause: EndCause::Normal
    }));
    assert!(matches!(
        handle
            .originate(
                Target::Uri("sip:x@127.0.0.1".into()),
                Caller::default(),
                SDP.into()
            )
            .await,
        Err(SipError::Shutdown)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_registration_to_a_dead_carrier_reports_failure() {
    let dead = free_port();
    let config = SipConfig::from_toml(&format!(
        "listen = \"127.0.0.1:0\"\nt1_ms = 20\n[[outbound_trunk]]\nname = \"dead\"\nproxy = \"127.0.0.1:{dead}\"\nusername = \"u\"\npassword = \"p\"\nregister = true\n"
    ))
    .unwrap();
    let (handle, rx) = start(config).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    // Timer F (64*T1 = 1.3 s) ends the attempt; the next one follows after the back-off (2 s).
    wait_for(&log, "two failed attempts", |evs| {
        evs.iter()
            .filter(
                |e| matches!(e, SipEvent::TrunkRegistrationFailed { trunk, .. } if trunk == "dead"),
            )
            .count()
            >= 2
    })
    .await;
    assert!(!events(&log)
        .iter()
        .any(|e| matches!(e, SipEvent::TrunkRegistered { .. })));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_without_bye_is_found_by_the_dialog_probe() {
    let mut config = base_config();
    config.t1_ms = 20;
    config.dialog_probe_secs = 1;
    let (handle, rx) = start(config).await;
    let log = hub(handle.clone(), rx, Script::Nothing);
    let (port, phone) = sipp_uas("uas_answer.xml");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let leg = handle
        .originate(
            Target::Uri(format!("sip:1001@127.0.0.1:{port}")),
            Caller::default(),
            SDP.into(),
        )
        .await
        .unwrap();
    wait_for(&log, "answered", |evs| {
        evs.iter().any(|e| matches!(e, SipEvent::Answered { .. }))
    })
    .await;
    // The phone process dies: no BYE, nothing answers any more.
    phone.abort();
    let _ = phone.await;
    wait_for(&log, "the probe ends the leg", |evs| {
        evs.contains(&SipEvent::Ended {
            leg,
            by: Party::Remote,
            cause: EndCause::Failure,
        })
    })
    .await;
    wait_clean(&handle).await;
    handle.shutdown().await;
}
