-- Email: every message's headers and raw bytes (audit), files per message, the outbox.

-- The normalized subject of an email thread, for threading by subject within a window.
ALTER TABLE conversations ADD COLUMN thread_key TEXT;
CREATE INDEX conversations_thread ON conversations (customer_id, thread_key);

-- Files of a message (emails carry several): which message, and inline images' content ids.
ALTER TABLE attachments ADD COLUMN message_seq INTEGER;
ALTER TABLE attachments ADD COLUMN content_id TEXT;
ALTER TABLE attachments ADD COLUMN inline INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attachments_message ON attachments (conversation_id, message_seq);

CREATE TABLE email_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    message_id      TEXT NOT NULL UNIQUE,
    in_reply_to     TEXT,
    refs            TEXT NOT NULL DEFAULT '',
    from_addr       TEXT,
    from_name       TEXT,
    to_addrs        TEXT NOT NULL DEFAULT '[]',
    cc_addrs        TEXT NOT NULL DEFAULT '[]',
    subject         TEXT,
    html            TEXT,
    -- auto_submitted, bounce, list, warnings, why it joined its conversation, mailbox key
    flags           TEXT NOT NULL DEFAULT '{}',
    raw             BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq)
);

-- Mail waiting to go out through the relay (acknowledgements, replies, forwards), retried
-- with back-off; what failed stays visible to the agent.
CREATE TABLE email_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER REFERENCES conversations (id) ON DELETE CASCADE,
    contact_id      INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    seq             INTEGER,
    kind            TEXT NOT NULL CHECK (kind IN ('ack', 'reply', 'forward', 'transcript')),
    message_id      TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX email_outbox_due ON email_outbox (status, next_attempt_at);
CREATE INDEX email_outbox_conversation ON email_outbox (conversation_id);
