//! Real test peers for the tests of this crate and of the hub: a dovecot IMAP server in a
//! temp directory. (Not used by the channel itself.)

use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The path of a peer program, or a panic saying how to install it.
pub fn require(program: &str, install: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/usr/local/bin",
    ]) {
        let candidate = PathBuf::from(dir).join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("test peer `{program}` is missing: install it with `{install}` (or run scripts/peers/email.sh)");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

const MAIL_UID: u32 = 65534; // nobody: dovecot refuses root as a mail user

/// A dovecot IMAP server for tests (`dovecot -F -c conf` as a child process on loopback),
/// with one passwd-file user `agent` / `secret`.
pub struct Dovecot {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

fn owned_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("test peer set-up");
    chown(path, Some(MAIL_UID), Some(MAIL_UID)).expect("test peer set-up");
}

impl Dovecot {
    pub fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, None)
    }

    /// With `tls` (certificate and key PEM paths) the port speaks IMAP over TLS (993 style).
    pub fn start_with(dir: &Path, port: u16, tls: Option<(&Path, &Path)>) -> Self {
        let dovecot = require("dovecot", "apt-get install dovecot-imapd");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("test peer set-up");
        let d = dir.display();
        for sub in ["run", "state"] {
            std::fs::create_dir_all(dir.join(sub)).expect("test peer set-up");
        }
        let maildir = dir.join("mail/agent");
        owned_dir(&dir.join("mail"));
        for sub in [
            "",
            "cur",
            "new",
            "tmp",
            ".Processed",
            ".Processed/cur",
            ".Processed/new",
            ".Processed/tmp",
        ] {
            owned_dir(&maildir.join(sub));
        }
        std::fs::write(dir.join("passwd"), "agent:{PLAIN}secret::::::\n")
            .expect("test peer set-up");
        let (ssl, imap_port, imaps_port) = match tls {
            Some((cert, key)) => (
                format!(
                    "ssl = required\nssl_cert = <{}\nssl_key = <{}\n",
                    cert.display(),
                    key.display()
                ),
                0,
                port,
            ),
            None => ("ssl = no\n".to_string(), port, 0),
        };
        let conf = format!(
            "{ssl}base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nmail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={MAIL_UID} gid={MAIL_UID} home={d}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n\
               inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n}}\n\
             service submission-login {{\n  inet_listener submission {{\n    port = 0\n  }}\n}}\n"
        );
        std::fs::write(dir.join("dovecot.conf"), conf).expect("test peer set-up");
        let child = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("test peer set-up");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "dovecot did not start: {}",
                std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Dovecot {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.join("mail/agent")
    }

    /// Puts a message into the maildir as an MTA's local delivery would.
    pub fn deliver(&self, name: &str, raw: &[u8]) {
        let tmp = self.maildir().join("tmp").join(name);
        std::fs::write(&tmp, raw).expect("test peer set-up");
        chown(&tmp, Some(MAIL_UID), Some(MAIL_UID)).expect("test peer set-up");
        std::fs::rename(&tmp, self.maildir().join("new").join(name)).expect("test peer set-up");
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}
