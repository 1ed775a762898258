//! Shared by the integration tests: a recording sink and peer look-ups.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use channel_email::{InboundMail, MailSink, SinkError, Stored};

/// Keeps every delivered message; fails the first `fail_first` deliveries temporarily (or
/// all of them permanently when `refuse` is set).
#[derive(Default)]
pub struct RecordingSink {
    pub stored: Mutex<Vec<InboundMail>>,
    pub attempts: AtomicUsize,
    pub fail_first: AtomicUsize,
    pub refuse: bool,
}

impl RecordingSink {
    pub fn failing_first(n: usize) -> Self {
        let s = Self::default();
        s.fail_first.store(n, Ordering::SeqCst);
        s
    }

    pub fn take(&self) -> Vec<InboundMail> {
        std::mem::take(&mut *self.stored.lock().unwrap())
    }

    pub fn count(&self) -> usize {
        self.stored.lock().unwrap().len()
    }
}

impl MailSink for RecordingSink {
    async fn deliver(&self, mail: InboundMail) -> Result<Stored, SinkError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.refuse {
            return Err(SinkError::Permanent("policy says no".into()));
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(SinkError::Temporary("database unavailable".into()));
        }
        let mut stored = self.stored.lock().unwrap();
        stored.push(mail);
        Ok(Stored {
            id: format!("msg-{n}"),
        })
    }
}

/// The path of a peer program, or a panic saying how to install it.
pub fn require(program: &str, install: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for candidate in [PathBuf::from(dir).join(program)] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let candidate = PathBuf::from(dir).join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("test peer `{program}` is missing: install it with `{install}` (or run scripts/peers/email.sh)");
}

/// python3 with the module `module` importable, or a panic saying how to install it.
pub fn require_python(module: &str, install: &str) -> PathBuf {
    let python = require("python3", "apt-get install python3");
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python module `{module}` is missing: install it with `{install}`"
    );
    python
}

pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}
