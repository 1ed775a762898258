//! Routing rules: the shipped `routing-rules/` files pass their cases files, every kind of
//! mistake is refused with the right file and line, and hot reload applies good files and
//! refuses bad ones while the last good rules stay in force.

use std::path::{Path, PathBuf};
use std::time::Duration;

use contact_hub::acd::rules::{run_cases, watch, ContactAttributes, RuleError, RuleSet};
use contact_hub::acd::types::Strategy;
use contact_hub::domain::Channel;
use tokio::sync::mpsc;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("routing-rules")
}

// ------------------------------------------------------------------------------------------
// The shipped files
// ------------------------------------------------------------------------------------------

#[test]
fn every_case_of_the_shipped_cases_files_passes() {
    let dir = rules_dir();
    let rules = watch::load_dir(&dir).unwrap_or_else(|e| panic!("shipped rules refused: {e}"));
    let mut cases_files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".cases.toml"))
        .collect();
    cases_files.sort();
    assert!(
        !cases_files.is_empty(),
        "no cases files in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &cases_files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let outcomes = run_cases(&rules, &name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(outcomes.len() >= 5, "{name}: only {} cases", outcomes.len());
        for o in outcomes {
            match &o.failure {
                None => println!("ok    {}:{}  {}", o.file, o.line, o.name),
                Some(why) => {
                    println!("FAIL  {}:{}  {}: {why}", o.file, o.line, o.name);
                    failures.push(format!("{}:{}: {}: {why}", o.file, o.line, o.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_rule_file_ships_a_cases_file() {
    let dir = rules_dir();
    let rule_files = watch::rule_files(&dir).unwrap();
    assert!(
        rule_files.len() >= 2,
        "expected queues.toml and routing.toml"
    );
    for path in rule_files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let cases = dir.join(format!("{}.cases.toml", name.trim_end_matches(".toml")));
        assert!(cases.is_file(), "{name} has no {}", cases.display());
    }
}

#[test]
fn the_shipped_queues_are_the_demo_queues() {
    let rules = watch::load_dir(&rules_dir()).unwrap();
    let mut names: Vec<&str> = rules.queues.iter().map(|q| q.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["billing", "sales", "support", "vip"]);
    let vip = rules.queue("vip").unwrap();
    assert_eq!(vip.strategy, Strategy::BestSkill);
    // A VIP outranks an ordinary customer on the same channel and line.
    let mut attrs = ContactAttributes::new(Channel::Email);
    attrs.called = Some("service@example.cn".into());
    let ordinary = rules.route(&attrs, 1_780_279_200_000);
    attrs.tier = Some("vip".into());
    let vip = rules.route(&attrs, 1_780_279_200_000);
    assert!(vip.priority > ordinary.priority, "{vip:?} vs {ordinary:?}");
}

// ------------------------------------------------------------------------------------------
// Every mistake: the right file, the right line, a reason
// ------------------------------------------------------------------------------------------

const QUEUES: &str = r#"[[queue]]
name = "support"
skills = ["support:2"]

[[queue]]
name = "sales"
skills = ["sales:1"]
"#;

const ROUTING: &str = r#"[[rule]]
name = "sales"
ivr_choice = "1"
queue = "sales"

[[rule]]
name = "default"
queue = "support"
"#;

fn load(queues: &str, routing: &str) -> Result<RuleSet, RuleError> {
    RuleSet::load(&[
        ("queues.toml".to_string(), queues.to_string()),
        ("routing.toml".to_string(), routing.to_string()),
    ])
}

#[track_caller]
fn assert_refused(result: Result<RuleSet, RuleError>, file: &str, line: usize, reason_has: &str) {
    let e = result.expect_err("the files should be refused");
    assert_eq!((e.file.as_str(), e.line), (file, line), "wrong place: {e}");
    assert!(
        e.reason.contains(reason_has),
        "reason {:?} lacks {reason_has:?}",
        e.reason
    );
    assert_eq!(e.to_string(), format!("{file}:{line}: {}", e.reason));
}

#[test]
fn the_base_files_of_these_tests_are_valid() {
    let rules = load(QUEUES, ROUTING).unwrap();
    let mut attrs = ContactAttributes::new(Channel::Voice);
    attrs.ivr_choice = Some("1".into());
    assert_eq!(rules.route(&attrs, 0).queue, "sales");
}

#[test]
fn a_toml_syntax_error_gives_its_file_and_line() {
    let routing = ROUTING.replace("queue = \"sales\"", "queue = \"sales");
    assert_refused(load(QUEUES, &routing), "routing.toml", 4, "");
    let queues = format!("{QUEUES}\n[[queue]\nname = \"x\"\n");
    assert_refused(load(&queues, ROUTING), "queues.toml", 9, "");
}

#[test]
fn an_unknown_key_gives_its_line() {
    let queues = QUEUES.replace(
        "skills = [\"sales:1\"]",
        "skills = [\"sales:1\"]\nstrategie = \"round_robin\"",
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        8,
        "unknown field `strategie`",
    );
    let routing = ROUTING.replace("ivr_choice = \"1\"", "ivr_choice = \"1\"\npriorty = 5");
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        4,
        "unknown field `priorty`",
    );
    let queues =
        format!("{QUEUES}\n[queue.hours]\nutc_offset = \"+08:00\"\nmonday = [\"09:00-18:00\"]\n");
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        11,
        "unknown field `monday`",
    );
}

#[test]
fn a_bad_skill_level_gives_the_line_of_that_skill() {
    let queues = QUEUES.replace(
        "skills = [\"support:2\"]",
        "skills = [\n    \"support:2\",\n    \"mandarin:11\",\n]",
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        5,
        "levels go from 1 to 10",
    );
    let routing = ROUTING.replace(
        "queue = \"sales\"",
        "queue = \"sales\"\nskills = [\"english:0\"]",
    );
    assert_refused(load(QUEUES, &routing), "routing.toml", 5, "english:0");
    let routing = ROUTING.replace(
        "queue = \"sales\"",
        "queue = \"sales\"\nskills = [\"english 3\"]",
    );
    assert_refused(load(QUEUES, &routing), "routing.toml", 5, "bad skill");
}

#[test]
fn a_bad_time_gives_its_line() {
    let queues = format!(
        "{QUEUES}\n[queue.hours]\nutc_offset = \"+08:00\"\nweekdays = [\n  \"09:00-12:00\",\n  \"13:00-25:00\",\n]\n"
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        13,
        "bad time \"25:00\"",
    );
    let queues = format!("{QUEUES}\n[queue.hours]\nutc_offset = \"+8\"\nmon = [\"09:00-18:00\"]\n");
    assert_refused(load(&queues, ROUTING), "queues.toml", 10, "bad utc_offset");
    let queues =
        format!("{QUEUES}\n[queue.hours]\nutc_offset = \"+08:00\"\nmon = [\"18:00-09:00\"]\n");
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        11,
        "ends before it starts",
    );
    let queues = format!(
        "{QUEUES}\n[queue.hours]\nutc_offset = \"+08:00\"\nmon = [\"09:00-18:00\"]\nholidays = [\"2026-02-30\"]\n"
    );
    assert_refused(load(&queues, ROUTING), "queues.toml", 12, "bad holiday");
    let routing = ROUTING.replace(
        "ivr_choice = \"1\"",
        "ivr_choice = \"1\"\ntime = { utc_offset = \"+08:00\", every_day = [\"9:00-18:00\"] }",
    );
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        4,
        "bad time \"9:00\"",
    );
}

#[test]
fn overlapping_hour_intervals_give_the_line_of_the_overlap() {
    let queues = format!(
        "{QUEUES}\n[queue.hours]\nutc_offset = \"+08:00\"\nmon = [\n  \"13:00-18:00\",\n  \"09:00-13:30\",\n]\n"
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        13,
        "09:00-13:30 overlaps 13:00-18:00",
    );
}

#[test]
fn a_bad_strategy_or_closed_handling_or_channel_gives_its_line() {
    let queues = QUEUES.replace(
        "name = \"sales\"",
        "name = \"sales\"\nstrategy = \"fastest\"",
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        7,
        "unknown variant `fastest`",
    );
    let queues = QUEUES.replace(
        "name = \"sales\"",
        "name = \"sales\"\nclosed_handling = \"hangup\"",
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        7,
        "unknown variant `hangup`",
    );
    let routing = ROUTING.replace(
        "ivr_choice = \"1\"",
        "channel = [\n  \"voice\",\n  \"telex\",\n]",
    );
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        5,
        "unknown channel \"telex\"",
    );
}

#[test]
fn a_bad_value_type_gives_its_line() {
    let queues = QUEUES.replace(
        "name = \"sales\"",
        "name = \"sales\"\noffer_timeout_secs = -5",
    );
    assert_refused(load(&queues, ROUTING), "queues.toml", 7, "u32");
    let queues = QUEUES.replace(
        "name = \"sales\"",
        "name = \"sales\"\noffer_timeout_secs = 0",
    );
    assert_refused(load(&queues, ROUTING), "queues.toml", 7, "at least 1");
    let routing = ROUTING.replace("ivr_choice = \"1\"", "ivr_choice = 1");
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        3,
        "a string or a list of strings",
    );
    let routing = ROUTING.replace("ivr_choice = \"1\"", "tier = []");
    assert_refused(load(QUEUES, &routing), "routing.toml", 3, "matches nothing");
}

#[test]
fn a_rule_naming_an_unknown_queue_gives_its_line() {
    let routing = ROUTING.replace("queue = \"sales\"", "queue = \"sale\"");
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        4,
        "unknown queue \"sale\"",
    );
    let queues = format!("{QUEUES}\n[[queue.overflow]]\nafter_secs = 30\nqueues = [\"billing\"]\n");
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        11,
        "unknown queue \"billing\"",
    );
}

#[test]
fn a_duplicate_queue_or_rule_name_gives_the_line_of_the_second() {
    let queues = format!("{QUEUES}\n[[queue]]\nname = \"support\"\n");
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        10,
        "first defined at queues.toml:2",
    );
    let routing = ROUTING.replace("name = \"default\"", "name = \"sales\"");
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        7,
        "duplicate rule name",
    );
}

#[test]
fn rules_without_a_final_catch_all_are_refused_at_the_last_rule() {
    let routing = ROUTING.replace("name = \"default\"", "name = \"default\"\ntier = [\"vip\"]");
    assert_refused(
        load(QUEUES, &routing),
        "routing.toml",
        6,
        "no catch-all rule",
    );
    assert_refused(load(QUEUES, ""), "routing.toml", 1, "no routing rules");
    // A rule after the catch-all can never match.
    let routing =
        format!("{ROUTING}\n[[rule]]\nname = \"late\"\ntier = [\"vip\"]\nqueue = \"sales\"\n");
    assert_refused(load(QUEUES, &routing), "routing.toml", 10, "never reached");
}

#[test]
fn overflow_steps_must_widen_in_time_order() {
    let queues = format!(
        "{QUEUES}\n[[queue.overflow]]\nafter_secs = 60\nskills = []\n\n[[queue.overflow]]\nafter_secs = 30\nskills = []\n"
    );
    assert_refused(
        load(&queues, ROUTING),
        "queues.toml",
        14,
        "increasing after_secs",
    );
    let queues = format!("{QUEUES}\n[[queue.overflow]]\nafter_secs = 30\n");
    assert_refused(load(&queues, ROUTING), "queues.toml", 9, "needs skills");
    let queues =
        format!("{QUEUES}max_wait_secs = 20\n\n[[queue.overflow]]\nafter_secs = 30\nskills = []\n");
    assert_refused(load(&queues, ROUTING), "queues.toml", 11, "never reached");
}

#[test]
fn a_malformed_cases_file_gives_its_line() {
    let rules = load(QUEUES, ROUTING).unwrap();
    let text = "[[case]]\nname = \"x\"\nqueue = \"support\"\nopen = true\n";
    let e = run_cases(&rules, "queues.cases.toml", text).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("queues.cases.toml", 1), "{e}");
    let text = "[[case]]\nname = \"x\"\nat = 2026-06-01T10:00:00\nchannel = \"voice\"\nexpect = { queue = \"support\" }\n";
    let e = run_cases(&rules, "routing.cases.toml", text).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("routing.cases.toml", 3), "{e}");
    assert!(e.reason.contains("UTC offset"), "{e}");
    // A wrong expectation is a failed case, not an error.
    let text = "[[case]]\nname = \"ivr 1\"\nat = 2026-06-01T10:00:00Z\nchannel = \"voice\"\nivr_choice = \"1\"\nexpect = { queue = \"support\", rule = \"sales\" }\n";
    let outcomes = run_cases(&rules, "routing.cases.toml", text).unwrap();
    assert_eq!(outcomes.len(), 1);
    let why = outcomes[0].failure.as_deref().unwrap();
    assert!(
        why.contains("queue: expected \"support\", got \"sales\""),
        "{why}"
    );
}

#[test]
fn load_dir_reads_rule_files_only_and_names_the_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queues.toml"), QUEUES).unwrap();
    std::fs::write(dir.path().join("routing.toml"), ROUTING).unwrap();
    std::fs::write(dir.path().join("routing.cases.toml"), "not = [valid rules").unwrap();
    std::fs::write(dir.path().join(".routing.toml.swp.toml"), "garbage = [").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "garbage = [").unwrap();
    let rules = watch::load_dir(dir.path()).unwrap();
    assert_eq!(rules.files(), ["queues.toml", "routing.toml"]);
    std::fs::write(
        dir.path().join("extra.toml"),
        "[[queue]]\nname = \"billing\"\nbogus = 1\n",
    )
    .unwrap();
    let e = watch::load_dir(dir.path()).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("extra.toml", 3), "{e}");
}

// ------------------------------------------------------------------------------------------
// Hot reload
// ------------------------------------------------------------------------------------------

/// Writes `name` whole (a temporary hidden file renamed over it), as editors and deploys do.
fn put(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn next(rx: &mut mpsc::Receiver<watch::Update>) -> watch::Update {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no update from the watcher within 10 s")
        .expect("the watcher stopped")
}

#[tokio::test]
async fn hot_reload_applies_good_rules_and_refuses_bad_ones_keeping_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(8);
    let task = watch::spawn(dir.path(), Duration::from_millis(20), tx);
    let mut live = watch::LiveRules::default();
    let mut ivr1 = ContactAttributes::new(Channel::Voice);
    ivr1.ivr_choice = Some("1".into());

    // An empty directory: refused, nothing in force yet.
    let update = next(&mut rx).await;
    assert!(
        update.as_ref().unwrap_err().reason.contains("no *.toml"),
        "{update:?}"
    );
    live.apply(update);
    assert!(live.rules.is_none());

    // Valid rules arrive.
    put(dir.path(), "queues.toml", QUEUES);
    put(dir.path(), "routing.toml", ROUTING);
    let update = next(&mut rx).await;
    let good = update.clone().expect("valid rules should load");
    live.apply(update);
    assert_eq!(live.rules.as_ref().unwrap().route(&ivr1, 0).queue, "sales");
    assert!(live.error.is_none());

    // A broken edit: refused with file and line; the last good rules stay in force.
    put(
        dir.path(),
        "routing.toml",
        &ROUTING.replace("queue = \"sales\"", "queue = \"sails\""),
    );
    let update = next(&mut rx).await;
    let e = update.clone().unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("routing.toml", 4), "{e}");
    assert!(e.reason.contains("unknown queue \"sails\""), "{e}");
    live.apply(update);
    assert_eq!(live.rules.as_ref(), Some(&good));
    assert_eq!(live.error.as_ref(), Some(&e));

    // Fixed differently: the new rules arrive and replace the old.
    put(
        dir.path(),
        "routing.toml",
        &ROUTING.replace("queue = \"sales\"", "queue = \"support\""),
    );
    let update = next(&mut rx).await;
    let fixed = update.clone().expect("fixed rules should load");
    assert_ne!(fixed, good);
    live.apply(update);
    assert_eq!(
        live.rules.as_ref().unwrap().route(&ivr1, 0).queue,
        "support"
    );
    assert!(live.error.is_none());

    // A cases file changing is not a rule change.
    put(dir.path(), "routing.cases.toml", "[[case]]\n");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "a cases file triggered a reload"
    );

    // Removing a file is a change too.
    std::fs::remove_file(dir.path().join("routing.toml")).unwrap();
    let e = next(&mut rx).await.unwrap_err();
    assert!(e.reason.contains("no routing rules"), "{e}");

    // Dropping the receiver ends the watcher.
    drop(rx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the watcher did not stop")
        .unwrap();
}
