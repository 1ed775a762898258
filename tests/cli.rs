//! The real `contact-hub` binary: help, migrate, user add, CSV import with bad rows and
//! re-import, serving with the data surviving a restart.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_contact-hub");

fn hub(db_url: &str, data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("HUB_DATA_DIR", data_dir)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "info")
        .current_dir(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run contact-hub");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(db_url: &str, data_dir: &Path) -> (Server, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log = data_dir.join(format!("serve-{port}.log"));
    let child = Command::new(BIN)
        .env("HUB_DATA_DIR", data_dir)
        .env("DATABASE_URL", db_url)
        .env("HUB_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("HUB_SMTP_LISTEN", "127.0.0.1:0")
        .current_dir(data_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "hub did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (
        Server { child, base },
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn help_explains_the_commands_to_a_newcomer() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = text(&out.stdout);
    for word in [
        "serve",
        "migrate",
        "user",
        "import",
        "demo",
        "--config",
        "DATABASE_URL",
        "HUB_HTTP_LISTEN",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = Command::new(BIN)
        .args(["user", "add", "x", "--role", "pilot"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("pilot"), "{}", text(&out.stderr));
}

#[test]
fn a_bad_config_file_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[http]\nlisten = 8080\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", "bad.toml", "migrate"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid configuration") && err.contains("listen"),
        "{err}"
    );
}

#[tokio::test]
async fn import_reports_bad_rows_reimport_updates_and_data_survives_a_restart() {
    for db in common::databases().await {
        let dir = tempfile::tempdir().unwrap();
        let url = if db.name == "sqlite" {
            String::new() // the embedded default: SQLite under HUB_DATA_DIR
        } else {
            db.url.clone()
        };
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/customers.csv");
        let fixture = fixture.to_str().unwrap();

        let out = hub(&url, dir.path(), &["migrate"], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        if db.name == "sqlite" {
            assert!(
                dir.path().join("contact-hub.db").exists(),
                "SQLite file under HUB_DATA_DIR"
            );
        }

        let out = hub(&url, dir.path(), &["import", "customers", fixture], None);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(
            stdout.contains("9 rows") && stdout.contains("4 created, 0 updated, 5 rejected"),
            "{}: {stdout}",
            db.name
        );
        for (line, why) in [
            ("line 5:", "name"),
            ("line 6:", "platinum"),
            ("line 7:", "phone"),
            ("line 8:", "do_not_call"),
        ] {
            let l = stderr
                .lines()
                .find(|l| l.starts_with(line))
                .unwrap_or_else(|| panic!("{line} not reported:\n{stderr}"));
            assert!(l.contains(why), "{l}");
        }
        // Line 9 reuses line 2's number: refused, naming the line that has it.
        let l9 = stderr
            .lines()
            .find(|l| l.starts_with("line 9:"))
            .unwrap_or_default();
        assert!(
            l9.contains("+8613800138000") && l9.contains("line 2"),
            "{stderr}"
        );

        let out = hub(&url, dir.path(), &["import", "customers", fixture], None);
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("0 created, 4 updated, 5 rejected"),
            "re-import updates: {stdout}"
        );

        let out = hub(
            &url,
            dir.path(),
            &[
                "user",
                "add",
                "Agent.Li",
                "--role",
                "agent",
                "--display-name",
                "李娜",
            ],
            Some("a-long-password\n"),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = hub(
            &url,
            dir.path(),
            &["user", "add", "agent.li", "--role", "agent"],
            Some("a-long-password\n"),
        );
        assert!(!out.status.success(), "duplicate user refused");
        let out = hub(
            &url,
            dir.path(),
            &["user", "add", "short", "--role", "agent"],
            Some("short\n"),
        );
        assert!(
            text(&out.stderr).contains("at least 8"),
            "{}",
            text(&out.stderr)
        );

        let (server, log) = serve(&url, dir.path()).await;
        assert!(
            log.contains("user add admin --role admin"),
            "start-up log says how to create an admin:\n{log}"
        );
        let client = reqwest::Client::new();
        let login = |base: String| {
            let client = client.clone();
            async move {
                let r: serde_json::Value = client
                    .post(format!("{base}/api/v1/auth/login"))
                    .json(
                        &serde_json::json!({"username": "agent.li", "password": "a-long-password"}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                r["token"].as_str().expect("login works").to_string()
            }
        };
        let token = login(server.base.clone()).await;
        let find = |base: String, token: String, q: &'static str| {
            let client = client.clone();
            async move {
                let r: serde_json::Value = client
                    .get(format!("{base}/api/v1/customers"))
                    .query(&[("q", q)])
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                r["customers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            }
        };
        // Numbers imported in local formats are found when typed in another format.
        assert_eq!(
            find(server.base.clone(), token.clone(), "13800138000").await,
            vec!["王小明"],
            "{}",
            db.name
        );
        assert_eq!(
            find(server.base.clone(), token.clone(), "+86 10 1234 5678").await,
            vec!["北京华星贸易有限公司"]
        );
        assert_eq!(
            find(server.base.clone(), token.clone(), "+886 2 2345 6789").await,
            vec!["陳大文"]
        );
        assert_eq!(
            find(server.base.clone(), token.clone(), "+85221234567").await,
            vec!["Harbour Logistics Ltd"]
        );
        assert_eq!(
            find(server.base.clone(), token.clone(), "wang.xm@example.cn").await,
            vec!["王小明"]
        );
        drop(server);

        // After a restart everything is still there.
        let (server, _) = serve(&url, dir.path()).await;
        let token = login(server.base.clone()).await;
        assert_eq!(
            find(server.base.clone(), token.clone(), "陳大文").await,
            vec!["陳大文"],
            "{}",
            db.name
        );
        drop(server);
    }
}
