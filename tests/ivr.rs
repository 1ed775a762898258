//! The IVR: the shipped flow passes its cases through the real routing rules; sessions driven
//! on a simulated clock (menus, timeouts, retries, barge-in and type-ahead, VIPs, strangers,
//! the balance self-service, languages); the queue experience schedule; parse errors with
//! lines; seeded fuzzing of the interpreter, the queue schedule and the parser.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use contact_hub::acd::rules::{load_dir, RuleError, RuleSet};
use contact_hub::acd::types::{ClosedHandling, Millis};
use contact_hub::ivr::cases::{run_cases, simulate, Script, Step};
use contact_hub::ivr::flow::SHIPPED_PROMPTS;
use contact_hub::ivr::queue::LeftReason;
use contact_hub::ivr::{
    CallerInfo, IvrAction, IvrConfig, IvrEvent, IvrInput, IvrOutcome, IvrSession, Language,
    Playback, PromptRef, QueueAction, QueueEvent, QueueExperience, QueueInput,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules() -> RuleSet {
    load_dir(&root().join("routing-rules")).unwrap_or_else(|e| panic!("routing rules: {e}"))
}

fn shipped_text() -> String {
    std::fs::read_to_string(root().join("routing-rules/ivr/ivr.toml")).unwrap()
}

fn shipped() -> Arc<IvrConfig> {
    Arc::new(
        IvrConfig::load("ivr.toml", &shipped_text(), &rules()).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// Unix ms of a local time in Beijing (+08:00).
fn beijing(rfc3339: &str) -> Millis {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

const MONDAY_10: &str = "2026-06-01T10:00:00+08:00";
const HOTLINE: &str = "+864008001234";
const CALLER: &str = "+8613800138000";

/// A call on a simulated clock, with every action it produced.
struct Call {
    s: IvrSession,
    now: Millis,
    log: Vec<IvrAction>,
}

impl Call {
    fn new(cfg: &Arc<IvrConfig>, caller: &str, called: &str, at: Millis) -> (Call, Vec<IvrAction>) {
        let mut c = Call {
            s: IvrSession::new(cfg.clone(), caller, called, at),
            now: at,
            log: Vec::new(),
        };
        let first = c.drain();
        (c, first)
    }

    fn drain(&mut self) -> Vec<IvrAction> {
        let mut v = Vec::new();
        while let Some(a) = self.s.poll_output() {
            v.push(a.clone());
            self.log.push(a);
        }
        v
    }

    fn input(&mut self, after_ms: Millis, i: IvrInput) -> Vec<IvrAction> {
        self.now += after_ms;
        self.s.handle(self.now, i);
        self.drain()
    }

    fn press(&mut self, keys: &str) -> Vec<IvrAction> {
        let mut v = Vec::new();
        for k in keys.chars() {
            v.extend(self.input(200, IvrInput::Dtmf(k)));
        }
        v
    }

    fn done(&mut self) -> Vec<IvrAction> {
        self.input(2_000, IvrInput::PlaybackDone)
    }

    /// Lets time run to the pending timeout; returns the time waited and the actions.
    fn wait(&mut self) -> (Millis, Vec<IvrAction>) {
        let t = self.s.poll_timeout().expect("something pending");
        let waited = t - self.now;
        self.now = t;
        self.s.handle_timeout(t);
        (waited, self.drain())
    }
}

fn plays(actions: &[IvrAction]) -> Vec<&Playback> {
    actions
        .iter()
        .filter_map(|a| match a {
            IvrAction::Play(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn keys(p: &Playback) -> Vec<String> {
    p.prompts.iter().map(|r| r.to_string()).collect()
}

fn events(actions: &[IvrAction]) -> Vec<&IvrEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            IvrAction::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn queued(actions: &[IvrAction]) -> Option<&contact_hub::ivr::CallAttributes> {
    actions.iter().find_map(|a| match a {
        IvrAction::Queue { attributes } => Some(attributes),
        _ => None,
    })
}

fn customer(tier: &str, language: &str, balance: Option<i64>) -> CallerInfo {
    CallerInfo {
        customer_id: 42,
        name: "王伟".into(),
        tier: tier.into(),
        language: Some(language.into()),
        balance_fen: balance,
        tags: vec!["reseller".into()],
    }
}

// ------------------------------------------------------------------------------------------
// The shipped flow and its cases
// ------------------------------------------------------------------------------------------

#[test]
fn every_case_of_the_shipped_ivr_cases_file_passes() {
    let rules = rules();
    let cfg = shipped();
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
    let text = std::fs::read_to_string(root().join("routing-rules/ivr/ivr.cases.toml")).unwrap();
    let outcomes =
        run_cases(&cfg, &rules, "ivr.cases.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(outcomes.len() >= 30, "only {} cases", outcomes.len());
    let failing: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| {
            format!(
                "{}:{}: {}: {}",
                o.file,
                o.line,
                o.name,
                o.failure.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert!(failing.is_empty(), "failing cases:\n{}", failing.join("\n"));
    println!("{} IVR cases passed", outcomes.len());
}

#[test]
fn a_case_that_expects_the_wrong_queue_fails_with_what_differed() {
    let text = r#"
[[case]]
name = "sales is not support"
at = 2026-06-01T10:00:00+08:00
called = "+864008001234"
input = ["1"]
[case.expect]
outcome = "queue"
queue = "support"
heard = ["goodbye"]
"#;
    let out = run_cases(&shipped(), &rules(), "x.cases.toml", text).unwrap();
    assert_eq!(out.len(), 1);
    let f = out[0].failure.as_deref().unwrap();
    assert!(
        f.contains("queue: expected \"support\", got \"sales\""),
        "{f}"
    );
    assert!(f.contains("heard: \"goodbye\" missing"), "{f}");
    assert_eq!(out[0].line, 2);

    let bad = "[[case]]\nname = \"x\"\nat = 2026-06-01T10:00:00+08:00\ncalled = \"+1\"\ninput = [\"1\", \"press\"]\n[case.expect]\noutcome = \"queue\"\n";
    let e = run_cases(&shipped(), &rules(), "x.cases.toml", bad).unwrap_err();
    assert_eq!(
        (e.line, e.reason.contains("bad input \"press\"")),
        (5, true),
        "{e}"
    );
}

/// The shipped prompt names exist in the media crate for every language, and every prompt the
/// flows play has its recording there (channels/media/prompts/generate.sh records the
/// [prompts] catalog), so no caller meets a silent gap.
#[test]
fn every_prompt_the_shipped_flows_play_is_recorded() {
    let dir = root().join("channels/media/prompts");
    for lang in Language::ALL {
        for name in SHIPPED_PROMPTS {
            let f = dir.join(lang.tag()).join(format!("{name}.wav"));
            assert!(f.is_file(), "{} missing", f.display());
        }
    }
    let cfg = shipped();
    assert!(!cfg.prompt_keys().is_empty());
    let missing = cfg.missing_prompt_files(&dir);
    assert!(
        missing.is_empty(),
        "not recorded (run channels/media/prompts/generate.sh): {missing:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Sessions on the shipped hotline
// ------------------------------------------------------------------------------------------

#[test]
fn a_stranger_navigates_the_main_menu_to_sales() {
    let cfg = shipped();
    let (mut c, first) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    assert!(
        first.contains(&IvrAction::Lookup {
            number: CALLER.into()
        }),
        "{first:?}"
    );
    assert!(
        plays(&first).is_empty(),
        "nothing plays before the lookup answers"
    );
    let a = c.input(150, IvrInput::LookupResult(None));
    let p = plays(&a);
    assert_eq!(keys(p[0]), vec!["bluebird_welcome"]);
    assert_eq!((p[0].language, p[0].barge_in), (Language::ZhCn, true));
    let a = c.done();
    assert_eq!(keys(plays(&a)[0]), vec!["main_menu", "other_language"]);
    c.done();
    let a = c.press("1");
    let attrs = queued(&a).expect("queued");
    assert_eq!(attrs.ivr_choice.as_deref(), Some("1"));
    assert_eq!(attrs.product.as_deref(), Some("sales"));
    assert_eq!((attrs.customer_id, attrs.tier.as_deref()), (None, None));
    assert!(events(&a).iter().any(
        |e| matches!(e, IvrEvent::Digits { node, digits } if node == "main" && digits == "1")
    ));
    assert_eq!(c.s.outcome(), Some(IvrOutcome::Queued));
    // Routed by the real rules: sales.
    let d = rules().route(&attrs.contact_attributes(), c.now);
    assert_eq!(d.queue, "sales");
    assert_eq!(c.s.poll_timeout(), None);
}

#[test]
fn a_vip_skips_the_menu_and_is_queued_with_the_archive_facts() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    let a = c.input(
        100,
        IvrInput::LookupResult(Some(customer("vip", "zh-CN", Some(100)))),
    );
    assert_eq!(keys(plays(&a)[0]), vec!["vip_welcome"]);
    assert!(events(&a).contains(&&IvrEvent::LookupDone {
        known: true,
        tier: Some("vip".into())
    }));
    let a = c.done();
    let attrs = queued(&a).unwrap().clone();
    assert_eq!(attrs.tier.as_deref(), Some("vip"));
    assert_eq!(attrs.customer_id, Some(42));
    assert_eq!(
        attrs.tags,
        vec!["reseller".to_string(), "ivr_vip".to_string()]
    );
    assert!(!c
        .log
        .iter()
        .any(|a| matches!(a, IvrAction::Play(p) if keys(p).contains(&"main_menu".to_string()))));
    let d = rules().route(&attrs.contact_attributes(), c.now);
    assert_eq!((d.queue.as_str(), d.priority), ("vip", 50));
}

#[test]
fn english_customers_hear_english_and_anyone_can_switch_with_8() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    let a = c.input(
        100,
        IvrInput::LookupResult(Some(customer("ordinary", "en-GB", None))),
    );
    assert_eq!(plays(&a)[0].language, Language::En);
    c.done();
    c.done();
    // 8: back to Mandarin; the menu is said again in Mandarin.
    let a = c.press("8");
    let p = plays(&a);
    assert_eq!(
        (p[0].language, keys(p[0])[0].as_str()),
        (Language::ZhCn, "main_menu")
    );
    c.done();
    let a = c.press("2");
    assert_eq!(queued(&a).unwrap().language, Language::ZhCn);

    // A stranger: Mandarin, then 8 → English.
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(100, IvrInput::LookupResult(None));
    c.done();
    c.done();
    let a = c.press("8");
    assert_eq!(plays(&a)[0].language, Language::En);
    assert!(events(&a).contains(&&IvrEvent::AttributeSet {
        name: "language".into(),
        value: "en".into()
    }));
}

#[test]
fn barge_in_stops_the_prompt_and_the_digit_counts() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(100, IvrInput::LookupResult(None));
    c.done(); // welcome heard; the menu plays
    let a = c.press("2");
    assert_eq!(a[0], IvrAction::StopPlayback, "{a:?}");
    assert!(events(&a)
        .iter()
        .any(|e| matches!(e, IvrEvent::BargeIn { node } if node == "main")));
    assert_eq!(queued(&a).unwrap().ivr_choice.as_deref(), Some("2"));
}

#[test]
fn keys_typed_during_the_welcome_skip_the_menu_prompt() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(100, IvrInput::LookupResult(None));
    // The welcome allows barge-in: "3" stops it and is kept for the menu, which takes it at once.
    let a = c.press("3");
    assert_eq!(a[0], IvrAction::StopPlayback);
    assert!(
        !plays(&a)
            .iter()
            .any(|p| keys(p).contains(&"main_menu".into())),
        "{a:?}"
    );
    let attrs = queued(&a).expect("billing for a stranger");
    assert_eq!(attrs.ivr_choice.as_deref(), Some("3"));
}

#[test]
fn digits_pressed_while_the_archive_is_asked_are_kept() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    assert!(c.press("2").is_empty());
    // The stranger still hears the welcome (barge-in would take a key pressed during it), then
    // the menu takes the kept "2" without saying itself.
    let a = c.input(100, IvrInput::LookupResult(None));
    assert_eq!(keys(plays(&a)[0]), vec!["bluebird_welcome"]);
    let a = c.done();
    assert_eq!(queued(&a).unwrap().ivr_choice.as_deref(), Some("2"));
}

#[test]
fn a_silent_caller_hears_two_retries_then_the_fallback() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(100, IvrInput::LookupResult(None));
    c.done();
    c.done(); // the menu has been said; the first-digit timer runs
    for attempt in 1..=2 {
        let (waited, a) = c.wait();
        assert_eq!(waited, 5_000, "first-digit timeout");
        assert!(events(&a).contains(&&IvrEvent::NoInput {
            node: "main".into(),
            attempt
        }));
        assert_eq!(
            keys(plays(&a)[0]),
            vec!["no_input", "main_menu", "other_language"]
        );
        c.done();
    }
    let (_, a) = c.wait();
    assert!(events(&a).contains(&&IvrEvent::Fallback {
        node: "main".into(),
        target: "no_choice".into()
    }));
    let attrs = queued(&a).unwrap();
    assert_eq!(
        (attrs.ivr_choice.as_deref(), attrs.tags.clone()),
        (Some("0"), vec!["ivr_no_choice".to_string()])
    );
}

#[test]
fn the_balance_self_service_is_contained_when_the_caller_ends_it() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(
        100,
        IvrInput::LookupResult(Some(customer("ordinary", "zh-CN", Some(123_456)))),
    );
    c.done();
    c.done();
    let a = c.press("3");
    assert_eq!(keys(plays(&a)[0]), vec!["billing_menu"]);
    c.done();
    let a = c.press("1");
    let p = plays(&a);
    assert_eq!(
        p[0].prompts,
        vec![
            PromptRef::Prompt("balance_is".into()),
            PromptRef::Money { fen: 123_456 }
        ]
    );
    let a = c.done();
    assert!(events(&a).contains(&&IvrEvent::SelfServiceDone {
        service: "balance".into()
    }));
    assert_eq!(keys(plays(&a)[0]), vec!["after_balance"]);
    let a = c.input(1_000, IvrInput::CallerHungUp);
    assert_eq!(
        events(&a),
        vec![
            &IvrEvent::Contained {
                service: "balance".into()
            },
            &IvrEvent::Ended {
                outcome: IvrOutcome::CallerHungUp,
                contained: true,
                node: "after_balance".into()
            },
        ]
    );
    assert!(
        !a.iter().any(|x| matches!(x, IvrAction::Hangup { .. })),
        "the caller hung up; nothing to do"
    );

    // The same with "#": the IVR says goodbye and hangs up, contained.
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(
        100,
        IvrInput::LookupResult(Some(customer("ordinary", "zh-CN", Some(5)))),
    );
    c.done();
    c.done();
    c.press("3");
    c.done();
    c.press("1");
    c.done();
    let a = c.press("#");
    assert_eq!(keys(plays(&a)[0]), vec!["goodbye"]);
    let a = c.done();
    assert_eq!(a.last(), Some(&IvrAction::Hangup { contained: true }));
}

#[test]
fn balance_then_a_clerk_is_not_contained() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(
        100,
        IvrInput::LookupResult(Some(customer("ordinary", "zh-CN", Some(99)))),
    );
    c.done();
    c.done();
    c.press("3");
    c.done();
    c.press("1");
    c.done();
    c.done();
    let a = c.press("0");
    assert!(queued(&a).is_some());
    assert!(!c
        .log
        .iter()
        .any(|a| matches!(a, IvrAction::Event(IvrEvent::Contained { .. }))));
    assert!(c.log.iter().any(|a| matches!(
        a,
        IvrAction::Event(IvrEvent::Ended {
            contained: false,
            ..
        })
    )));
}

#[test]
fn a_slow_archive_times_out_and_a_late_answer_is_ignored() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    let (waited, a) = c.wait();
    assert_eq!(waited, 2_000, "lookup_timeout_secs = 2");
    assert!(events(&a).contains(&&IvrEvent::LookupTimedOut));
    assert_eq!(keys(plays(&a)[0]), vec!["bluebird_welcome"]);
    let a = c.input(
        10,
        IvrInput::LookupResult(Some(customer("vip", "en", None))),
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(c.s.customer(), None);
}

#[test]
fn nothing_happens_after_the_call_ended() {
    let cfg = shipped();
    let (mut c, _) = Call::new(&cfg, CALLER, HOTLINE, beijing(MONDAY_10));
    c.input(100, IvrInput::CallerHungUp);
    assert_eq!(c.s.outcome(), Some(IvrOutcome::CallerHungUp));
    for i in [
        IvrInput::Dtmf('1'),
        IvrInput::PlaybackDone,
        IvrInput::LookupResult(None),
        IvrInput::CallerHungUp,
    ] {
        assert!(c.input(10, i).is_empty());
    }
    c.s.handle_timeout(c.now + 1_000_000);
    assert!(c.drain().is_empty());
    assert_eq!(c.s.poll_timeout(), None);
}

#[test]
fn every_step_is_an_event_for_the_call_record() {
    let cfg = shipped();
    let trace = simulate(
        cfg,
        &Script {
            at: beijing(MONDAY_10),
            caller: CALLER.into(),
            called: HOTLINE.into(),
            customer: None,
            lookup_answers: true,
            steps: vec![Step::Digits("5".into()), Step::Digits("1".into())],
        },
    );
    let kinds: Vec<&str> = trace.events().map(|e| e.kind()).collect();
    for k in [
        "ivr_started",
        "ivr_node_entered",
        "ivr_lookup",
        "ivr_invalid_input",
        "ivr_digits",
        "ivr_attribute_set",
        "ivr_ended",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let ended = trace.events().last().unwrap();
    let data = ended.data();
    assert_eq!(data["kind"], "ended");
    assert_eq!(data["outcome"], "queued");
    assert_eq!(data["node"], "to_queue");
    let invalid = trace
        .events()
        .find(|e| e.kind() == "ivr_invalid_input")
        .unwrap()
        .data();
    assert_eq!(
        (invalid["digits"].as_str(), invalid["attempt"].as_u64()),
        (Some("5"), Some(1))
    );
}

// ------------------------------------------------------------------------------------------
// Digit collection details, on a small flow
// ------------------------------------------------------------------------------------------

const LAB: &str = r#"
[defaults]
invalid_prompts = ["closed"]
timeout_prompts = ["please_hold"]

[[flow]]
name = "lab"
start = "intro"

[flow.node.intro]
type = "play"
prompts = ["welcome"]
next = "menu"

[flow.node.menu]
type = "menu"
prompts = ["press1"]
choices = { 1 = "one", 12 = "twelve", 3 = "account" }
retries = 1
fallback = "bye"

[flow.node.one]
type = "set"
ivr_choice = "1"
next = "q"

[flow.node.twelve]
type = "set"
ivr_choice = "12"
next = "q"

[flow.node.account]
type = "collect"
prompts = ["you_are_number"]
min_digits = 4
max_digits = 6
inter_digit_timeout_secs = 2
variable = "account"
retries = 0
fallback = "bye"
next = "readback"

[flow.node.readback]
type = "play"
prompts = ["$digits"]
next = "q"

[flow.node.q]
type = "queue"

[flow.node.bye]
type = "hangup"
prompts = ["goodbye"]
"#;

fn lab() -> Arc<IvrConfig> {
    Arc::new(IvrConfig::load("lab.toml", LAB, &rules()).unwrap_or_else(|e| panic!("{e}")))
}

/// A lab call listening at the menu (the welcome and the menu prompt heard).
fn at_menu() -> Call {
    let (mut c, first) = Call::new(&lab(), CALLER, "+1", 0);
    assert_eq!(keys(plays(&first)[0]), vec!["welcome"]);
    assert!(!plays(&first)[0].barge_in);
    c.done();
    c.done();
    c
}

#[test]
fn a_key_that_starts_a_longer_key_waits_for_the_inter_digit_timeout() {
    let mut c = at_menu();
    assert!(queued(&c.press("1")).is_none(), "1 may become 12");
    let (waited, a) = c.wait();
    assert_eq!(waited, 3_000, "inter-digit timeout");
    assert_eq!(queued(&a).unwrap().ivr_choice.as_deref(), Some("1"));

    let mut c = at_menu();
    let a = c.press("12");
    assert_eq!(
        queued(&a).unwrap().ivr_choice.as_deref(),
        Some("12"),
        "a full key is taken at once"
    );

    let mut c = at_menu();
    let a = c.press("1#");
    assert_eq!(
        queued(&a).unwrap().ivr_choice.as_deref(),
        Some("1"),
        "# ends the key"
    );

    let mut c = at_menu();
    let a = c.press("13");
    assert!(events(&a).contains(&&IvrEvent::InvalidInput {
        node: "menu".into(),
        digits: "13".into(),
        attempt: 1
    }));
}

#[test]
fn a_wrong_key_then_silence_reaches_the_fallback_after_the_retries() {
    let mut c = at_menu();
    let a = c.press("7");
    assert_eq!(
        keys(plays(&a)[0]),
        vec!["closed", "press1"],
        "retry prompt, then the menu again"
    );
    c.done();
    let (_, a) = c.wait();
    assert!(events(&a).contains(&&IvrEvent::NoInput {
        node: "menu".into(),
        attempt: 2
    }));
    assert_eq!(keys(plays(&a)[0]), vec!["goodbye"]);
    let a = c.done();
    assert_eq!(a.last(), Some(&IvrAction::Hangup { contained: false }));
}

#[test]
fn keys_typed_during_a_prompt_without_barge_in_wait_for_the_menu() {
    let (mut c, _) = Call::new(&lab(), CALLER, "+1", 0);
    assert!(
        c.press("12").is_empty(),
        "no barge-in: the welcome plays on"
    );
    let a = c.done();
    assert!(
        plays(&a).is_empty(),
        "the menu prompt is skipped for typed-ahead keys"
    );
    assert_eq!(queued(&a).unwrap().ivr_choice.as_deref(), Some("12"));
}

#[test]
fn collect_takes_min_to_max_digits_and_reads_them_back() {
    // Full length ends collection at once.
    let mut c = at_menu();
    c.press("3");
    c.done();
    let a = c.press("123456");
    assert!(events(&a).contains(&&IvrEvent::Digits {
        node: "account".into(),
        digits: "123456".into()
    }));
    assert_eq!(
        plays(&a)[0].prompts,
        vec![PromptRef::Digits("123456".into())]
    );
    assert_eq!(c.s.variable("account"), Some("123456"));

    // Four digits and #.
    let mut c = at_menu();
    c.press("3");
    c.done();
    let a = c.press("4321#");
    assert_eq!(plays(&a)[0].prompts, vec![PromptRef::Digits("4321".into())]);

    // Four digits and a pause: the inter-digit timeout (2 s here) ends it.
    let mut c = at_menu();
    c.press("3");
    c.done();
    c.press("9876");
    let (waited, a) = c.wait();
    assert_eq!(waited, 2_000);
    assert_eq!(plays(&a)[0].prompts, vec![PromptRef::Digits("9876".into())]);

    // Too short: invalid; no retries on this node → fallback.
    let mut c = at_menu();
    c.press("3");
    c.done();
    c.press("12");
    let (_, a) = c.wait();
    assert!(events(&a).contains(&&IvrEvent::InvalidInput {
        node: "account".into(),
        digits: "12".into(),
        attempt: 1
    }));
    assert!(events(&a).contains(&&IvrEvent::Fallback {
        node: "account".into(),
        target: "bye".into()
    }));
}

#[test]
fn a_prompt_that_never_reports_its_end_is_given_up() {
    let (mut c, _) = Call::new(&lab(), CALLER, "+1", 0);
    let (waited, a) = c.wait();
    assert_eq!(waited, 120_000, "prompt_timeout_secs default");
    assert_eq!(a[0], IvrAction::StopPlayback);
    assert!(events(&a).contains(&&IvrEvent::PromptTimedOut {
        node: "intro".into()
    }));
    assert_eq!(keys(plays(&a)[0]), vec!["press1"]);
}

// ------------------------------------------------------------------------------------------
// Queue experience
// ------------------------------------------------------------------------------------------

struct Wait {
    q: QueueExperience,
    now: Millis,
}

impl Wait {
    fn drain(&mut self) -> Vec<QueueAction> {
        std::iter::from_fn(|| self.q.poll_output()).collect()
    }
    fn at(&mut self, t: Millis, i: QueueInput) -> Vec<QueueAction> {
        self.now = t;
        self.q.handle(t, i);
        self.drain()
    }
    fn tick(&mut self) -> (Millis, Vec<QueueAction>) {
        let t = self.q.poll_timeout().unwrap();
        self.now = t;
        self.q.handle_timeout(t);
        (t, self.drain())
    }
}

fn qplays(a: &[QueueAction]) -> Vec<&Playback> {
    a.iter()
        .filter_map(|x| match x {
            QueueAction::Play(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn qkeys(a: &[QueueAction]) -> Vec<String> {
    qplays(a).first().map(|p| keys(p)).unwrap_or_default()
}

fn waiting(queue: &str) -> (Wait, Vec<QueueAction>) {
    let cfg = shipped();
    let mut w = Wait {
        q: QueueExperience::new(cfg.queue_experience(queue), queue, Language::En, 0),
        now: 0,
    };
    let first = w.drain();
    (w, first)
}

#[test]
fn position_and_wait_are_announced_at_the_start_and_again_when_they_change() {
    let (mut w, first) = waiting("support");
    assert_eq!(qkeys(&first), vec!["please_hold"]);
    // The ACD reports while the greeting plays: announced right after it.
    assert!(w
        .at(
            500,
            QueueInput::Position {
                position: 3,
                expected_wait_secs: Some(200)
            }
        )
        .is_empty());
    let a = w.at(2_000, QueueInput::PlaybackDone);
    assert_eq!(
        qkeys(&a),
        [
            "you_are_number",
            "number:3",
            "in_line",
            "expected_wait",
            "number:4",
            "minutes",
            "press_star_callback"
        ]
    );
    assert!(
        a.contains(&QueueAction::Event(QueueEvent::PositionAnnounced {
            position: 3,
            wait_minutes: Some(4)
        }))
    );
    let a = w.at(9_000, QueueInput::PlaybackDone);
    let music = qplays(&a);
    assert_eq!(
        (music[0].prompts.clone(), music[0].looping),
        (vec![PromptRef::MusicOnHold], true)
    );

    // Comfort 45 s after the announcement ended.
    let (t, a) = w.tick();
    assert_eq!(t, 54_000);
    assert_eq!(qkeys(&a), vec!["comfort_busy", "press_star_callback"]);
    w.at(58_000, QueueInput::PlaybackDone);
    // At 62 s (60 s after the announcement) nothing changed: no announcement.
    let (t, a) = w.tick();
    assert_eq!(t, 62_000);
    assert!(a.is_empty(), "{a:?}");
    // The place changes; it is told at the next check, not at once.
    assert!(w
        .at(
            70_000,
            QueueInput::Position {
                position: 2,
                expected_wait_secs: Some(90)
            }
        )
        .is_empty());
    let (t, a) = w.tick();
    assert_eq!(
        (t, qkeys(&a)),
        (
            103_000,
            vec!["please_hold".to_string(), "press_star_callback".into()]
        ),
        "comfort messages rotate"
    );
    w.at(105_000, QueueInput::PlaybackDone);
    let (t, a) = w.tick();
    assert_eq!(t, 122_000);
    assert_eq!(
        qkeys(&a)[..6],
        [
            "you_are_number",
            "number:2",
            "in_line",
            "expected_wait",
            "number:2",
            "minutes"
        ]
    );
}

#[test]
fn star_asks_for_a_callback_that_keeps_the_place() {
    let (mut w, _) = waiting("sales");
    w.at(
        100,
        QueueInput::Position {
            position: 5,
            expected_wait_secs: None,
        },
    );
    w.at(2_000, QueueInput::PlaybackDone);
    w.at(6_000, QueueInput::PlaybackDone); // music
    assert!(
        w.at(7_000, QueueInput::Dtmf('5')).is_empty(),
        "other keys do nothing"
    );
    let a = w.at(8_000, QueueInput::Dtmf('*'));
    assert_eq!(
        a[0],
        QueueAction::Event(QueueEvent::CallbackRequested { position: Some(5) })
    );
    assert_eq!(qkeys(&a), vec!["callback_confirm", "goodbye"]);
    let (t, nothing) = (w.q.poll_timeout(), w.drain());
    assert!(nothing.is_empty() && t.is_some());
    let a = w.at(11_000, QueueInput::PlaybackDone);
    assert_eq!(a[0], QueueAction::Callback);
    assert_eq!(
        a[1],
        QueueAction::Event(QueueEvent::Left {
            reason: LeftReason::Callback
        })
    );
    assert!(w.q.is_finished());
    assert!(w.at(12_000, QueueInput::Dtmf('*')).is_empty());
    assert_eq!(w.q.poll_timeout(), None);
}

#[test]
fn a_closed_or_overflowing_queue_takes_a_message_or_promises_a_callback() {
    let (mut w, _) = waiting("sales");
    w.at(1_000, QueueInput::PlaybackDone);
    let a = w.at(
        30_000,
        QueueInput::Closed {
            handling: ClosedHandling::Voicemail,
        },
    );
    assert_eq!(qkeys(&a), vec!["leave_message", "beep"]);
    assert!(
        w.at(31_000, QueueInput::Dtmf('*')).is_empty(),
        "too late for a callback"
    );
    let a = w.at(34_000, QueueInput::PlaybackDone);
    assert_eq!(
        a[0],
        QueueAction::Voicemail {
            queue: "sales".into()
        }
    );

    let (mut w, _) = waiting("vip");
    let a = w.at(
        30_000,
        QueueInput::Closed {
            handling: ClosedHandling::Callback,
        },
    );
    assert_eq!(qkeys(&a), vec!["callback_confirm", "goodbye"]);
    assert_eq!(
        w.at(33_000, QueueInput::PlaybackDone)[0],
        QueueAction::Callback
    );
}

#[test]
fn an_agent_connecting_stops_the_music() {
    let (mut w, _) = waiting("vip");
    w.at(1_000, QueueInput::PlaybackDone);
    let a = w.at(5_000, QueueInput::AgentConnected);
    assert_eq!(a[0], QueueAction::StopPlayback);
    assert!(w.q.is_finished());
}

#[test]
fn vip_comfort_comes_every_30_seconds_and_billing_tells_no_wait() {
    let (mut w, _) = waiting("vip");
    w.at(2_000, QueueInput::PlaybackDone);
    let (t, a) = w.tick();
    assert_eq!((t, qkeys(&a)[0].as_str()), (32_000, "vip_comfort"));

    let (mut w, _) = waiting("billing");
    w.at(
        0,
        QueueInput::Position {
            position: 1,
            expected_wait_secs: Some(30),
        },
    );
    let a = w.at(2_000, QueueInput::PlaybackDone);
    assert_eq!(
        qkeys(&a),
        vec![
            "you_are_number",
            "number:1",
            "in_line",
            "press_star_callback"
        ]
    );
}

// ------------------------------------------------------------------------------------------
// Parse errors in the shipped file's own lines
// ------------------------------------------------------------------------------------------

fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the file"));
    text[..at].matches('\n').count() + 1
}

fn refuse(text: &str) -> RuleError {
    IvrConfig::load("ivr.toml", text, &rules()).expect_err("refused")
}

#[test]
fn errors_in_the_shipped_file_name_their_line() {
    let text = shipped_text();
    let cases = [
        (
            "next = \"sales_hours\"",
            "next = \"sales_hour\"",
            "unknown node \"sales_hour\" in flow \"hotline\"",
        ),
        (
            "queue = \"billing\"",
            "queue = \"bill\"",
            "unknown queue \"bill\"",
        ),
        (
            "prompts = [\"billing_menu\"]",
            "prompts = [\"biling_menu\"]",
            "unknown prompt \"biling_menu\"",
        ),
        (
            "service = \"balance\"",
            "service = \"invoice\"",
            "unknown service \"invoice\"",
        ),
        (
            "language = \"zh-TW\"\nnext = \"welcome\"",
            "language = \"fr\"\nnext = \"welcome\"",
            "unknown language \"fr\"",
        ),
    ];
    for (from, to, reason) in cases {
        let line = line_of(&text, from);
        let e = refuse(&text.replacen(from, to, 1));
        assert_eq!((e.file.as_str(), e.line), ("ivr.toml", line), "{e}");
        assert!(e.reason.contains(reason), "{e}");
    }
    // A loop on a silent line: at the node whose target closes it.
    let e = refuse(&text.replacen(
        "fallback = \"billing_hours\"",
        "fallback = \"billing_who\"",
        1,
    ));
    assert_eq!(e.line, line_of(&text, "[flow.node.billing_menu]"), "{e}");
    assert!(
        e.reason
            .contains("billing_who → billing_menu → billing_who"),
        "{e}"
    );
    // A TOML syntax error: the parser's line.
    let line = line_of(&text, "[flow.node.billing_menu]");
    let e = refuse(&text.replacen("[flow.node.billing_menu]", "[flow.node.billing_menu", 1));
    assert_eq!(e.line, line, "{e}");
    // A prompt without zh-TW text, used in a flow that speaks zh-TW.
    let e = refuse(&text.replacen(", zh-TW = \"您的帳戶預付餘額為\"", "", 1));
    assert_eq!(
        e.line,
        line_of(&text, "credit_prompts = [\"credit_is\""),
        "{e}"
    );
    assert!(
        e.reason.contains("prompt \"credit_is\" has no zh-TW text"),
        "{e}"
    );
}

// ------------------------------------------------------------------------------------------
// Seeded fuzzing
// ------------------------------------------------------------------------------------------

const KEYS: &[char] = &['0', '1', '2', '3', '5', '8', '9', '*', '#', 'A', 'x'];

fn terminal(a: &IvrAction) -> bool {
    matches!(
        a,
        IvrAction::Queue { .. }
            | IvrAction::Voicemail { .. }
            | IvrAction::Callback { .. }
            | IvrAction::Transfer { .. }
            | IvrAction::Hangup { .. }
    )
}

/// Random digits, timeouts, playback ends, lookups and time jumps never panic; a silent line
/// then always ends the call within a bounded number of steps; nothing follows the end.
#[test]
fn random_calls_always_end_and_stay_ended() {
    let cfgs = [shipped(), lab()];
    let numbers = [HOTLINE, "+864008009999", "+864008002001", "+1"];
    let callers = [CALLER, "+886912345678", "anonymous", ""];
    let mut rng = StdRng::seed_from_u64(7919);
    let mut silent_steps_max = 0;
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..10_000 {
        let cfg = &cfgs[round % 2];
        let at = beijing(MONDAY_10) + rng.random_range(0..7 * 86_400_000i64);
        let (mut c, _) = Call::new(
            cfg,
            callers[rng.random_range(0..4)],
            numbers[rng.random_range(0..4)],
            at,
        );
        let who = match rng.random_range(0..4) {
            0 => None,
            1 => Some(customer(
                "vip",
                "en",
                Some(rng.random_range(-10_000..10_000)),
            )),
            2 => Some(customer("ordinary", "zh-TW", None)),
            _ => Some(customer(
                "important",
                "zh-CN",
                Some(rng.random_range(0..10_000_000)),
            )),
        };
        for _ in 0..rng.random_range(0..60) {
            if c.s.is_finished() {
                break;
            }
            let step = rng.random_range(0..100);
            if step < 45 {
                c.input(
                    rng.random_range(0..4_000),
                    IvrInput::Dtmf(KEYS[rng.random_range(0..KEYS.len())]),
                );
            } else if step < 70 {
                c.input(rng.random_range(0..4_000), IvrInput::PlaybackDone);
            } else if step < 80 {
                c.input(
                    rng.random_range(0..500),
                    IvrInput::LookupResult(who.clone()),
                );
            } else if step < 98 {
                // A timeout, on time or at a random moment (early calls must do nothing).
                let t = if rng.random_bool(0.5) {
                    c.s.poll_timeout().unwrap_or(c.now)
                } else {
                    c.now + rng.random_range(0..10_000)
                };
                c.now = c.now.max(t);
                c.s.handle_timeout(c.now);
                c.drain();
            } else {
                c.input(0, IvrInput::CallerHungUp);
            }
        }
        // Silence: prompts end, timeouts fire; the store never answers.
        let mut steps = 0;
        while !c.s.is_finished() {
            steps += 1;
            assert!(
                steps <= 200,
                "round {round}: no end after 200 silent steps: {:?}",
                c.s.current_node()
            );
            let pending = c.s.poll_timeout();
            assert!(
                pending.is_some(),
                "round {round}: a waiting call must have a timeout"
            );
            if rng.random_bool(0.5)
                && c.log
                    .last()
                    .is_some_and(|a| matches!(a, IvrAction::Play(_)))
            {
                c.done();
            } else {
                c.wait();
            }
        }
        silent_steps_max = silent_steps_max.max(steps);
        *seen
            .entry(format!("{:?}", c.s.outcome().unwrap()))
            .or_insert(0) += 1;
        let ends: Vec<&IvrAction> = c.log.iter().filter(|a| terminal(a)).collect();
        let ended: Vec<&IvrEvent> = events(&c.log)
            .into_iter()
            .filter(|e| matches!(e, IvrEvent::Ended { .. }))
            .collect();
        assert_eq!(ended.len(), 1, "round {round}: {ended:?}");
        match c.s.outcome().unwrap() {
            IvrOutcome::CallerHungUp => assert!(ends.is_empty(), "round {round}"),
            _ => assert_eq!(ends.len(), 1, "round {round}: {ends:?}"),
        }
        let end_at = c.log.len();
        for i in [
            IvrInput::Dtmf('1'),
            IvrInput::PlaybackDone,
            IvrInput::LookupResult(None),
            IvrInput::CallerHungUp,
        ] {
            c.input(1_000, i);
        }
        c.s.handle_timeout(c.now + 10_000_000);
        c.drain();
        assert_eq!(c.log.len(), end_at, "round {round}: actions after the end");
    }
    println!("longest silent tail: {silent_steps_max} steps; outcomes {seen:?}");
    // The random walk reaches every way out (a bias-free check that the run is not trivial).
    for o in [
        "Queued",
        "Voicemail",
        "Callback",
        "Transferred",
        "HungUp",
        "CallerHungUp",
    ] {
        assert!(
            seen.get(o).copied().unwrap_or(0) > 10,
            "{o} too rare: {seen:?}"
        );
    }
}

#[test]
fn random_queue_waits_never_panic_and_end_once() {
    let cfg = shipped();
    let mut rng = StdRng::seed_from_u64(20260601);
    for round in 0..2_000 {
        let queue = ["support", "sales", "billing", "vip"][round % 4];
        let mut w = Wait {
            q: QueueExperience::new(cfg.queue_experience(queue), queue, Language::ZhCn, 0),
            now: 0,
        };
        let mut all = w.drain();
        for _ in 0..rng.random_range(0..80) {
            let t = w.now + rng.random_range(0..20_000);
            let input = match rng.random_range(0..100) {
                0..=29 => QueueInput::Position {
                    position: rng.random_range(0..20),
                    expected_wait_secs: rng.random_bool(0.7).then(|| rng.random_range(0..2_000)),
                },
                30..=44 => QueueInput::Dtmf(KEYS[rng.random_range(0..KEYS.len())]),
                45..=74 => QueueInput::PlaybackDone,
                75..=77 => QueueInput::Closed {
                    handling: [
                        ClosedHandling::Voicemail,
                        ClosedHandling::Callback,
                        ClosedHandling::Acknowledge,
                    ][rng.random_range(0..3)],
                },
                78 => QueueInput::AgentConnected,
                79 => QueueInput::CallerHungUp,
                _ => {
                    if let Some(t) = w.q.poll_timeout() {
                        w.now = w.now.max(t);
                        w.q.handle_timeout(w.now);
                        all.extend(w.drain());
                    }
                    continue;
                }
            };
            all.extend(w.at(t, input));
            assert!(w.q.is_finished() || w.q.poll_timeout().is_some() || !qplays(&all).is_empty());
        }
        let lefts = all
            .iter()
            .filter(|a| matches!(a, QueueAction::Event(QueueEvent::Left { .. })))
            .count();
        let handovers = all
            .iter()
            .filter(|a| matches!(a, QueueAction::Callback | QueueAction::Voicemail { .. }))
            .count();
        assert!(lefts <= 1 && handovers <= lefts, "round {round}: {all:?}");
        if w.q.is_finished() {
            let n = all.len();
            all.extend(w.at(w.now + 1, QueueInput::Dtmf('*')));
            assert_eq!(all.len(), n);
        }
    }
}

/// Mangled IVR files are refused with a line inside the file, or load; never a panic.
#[test]
fn mangled_ivr_files_never_panic() {
    let text = shipped_text();
    let rules = rules();
    let lines: Vec<&str> = text.lines().collect();
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '"')
        .filter(|w| !w.is_empty())
        .collect();
    let mut rng = StdRng::seed_from_u64(42);
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..400 {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..l.len());
            match rng.random_range(0..5) {
                0 => {
                    l.remove(i);
                }
                1 => {
                    let dup = l[i].clone();
                    l.insert(i, dup);
                }
                2 => {
                    let w = words[rng.random_range(0..words.len())];
                    if let Some(q) = l[i].find('"') {
                        l[i].insert_str(q + 1, w);
                    }
                }
                3 => {
                    let cut = rng.random_range(0..=l[i].len());
                    let cut = (0..=cut)
                        .rev()
                        .find(|&c| l[i].is_char_boundary(c))
                        .unwrap_or(0);
                    l[i].truncate(cut);
                }
                _ => {
                    l[i].push_str(["]", "\"", " = 1", "#", "{", "\u{3000}"][rng.random_range(0..6)])
                }
            }
        }
        let mangled = l.join("\n");
        match IvrConfig::load("ivr.toml", &mangled, &rules) {
            Ok(_) => ok += 1,
            Err(e) => {
                refused += 1;
                assert!(e.line <= l.len() + 1, "{e}");
                assert!(!e.reason.is_empty());
            }
        }
    }
    println!("mangled files: {ok} loaded, {refused} refused");
    assert!(refused > 100, "mutations should mostly break the file");
}

#[test]
fn the_ivr_file_loads_from_disk_and_reports_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ivr.toml");
    std::fs::write(
        &path,
        "[[flow]]\nname = \"x\"\nstart = \"nope\"\n[flow.node.a]\ntype = \"hangup\"\n",
    )
    .unwrap();
    let e = IvrConfig::load_path(&path, &rules()).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("ivr.toml", 3), "{e}");
    let e = IvrConfig::load_path(Path::new("/nonexistent/ivr.toml"), &rules()).unwrap_err();
    assert_eq!(e.line, 0);
}
