-- Conversations (a chat session, an email thread) and their messages; chat sessions; files.

CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT NOT NULL CHECK (channel IN ('voice', 'email', 'fax', 'chat', 'callback', 'outbound')),
    customer_id INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    subject     TEXT,
    language    TEXT,
    status      TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    closed_at   INTEGER
);
CREATE INDEX conversations_customer ON conversations (customer_id, created_at);
CREATE INDEX conversations_open ON conversations (status, channel);

-- The contacts of a conversation (a transfer makes a second contact of the same chat).
ALTER TABLE contacts ADD COLUMN conversation_id INTEGER REFERENCES conversations (id);
CREATE INDEX contacts_conversation ON contacts (conversation_id);

CREATE TABLE attachments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    file_name       TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    data            BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX attachments_conversation ON attachments (conversation_id);

-- Every message of a conversation, numbered 1, 2, 3 … in the order stored.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    sender          TEXT NOT NULL CHECK (sender IN ('customer', 'agent', 'system', 'note')),
    agent_id        INTEGER REFERENCES users (id) ON DELETE SET NULL,
    name            TEXT,
    body            TEXT NOT NULL,
    client_id       TEXT,
    event           TEXT,
    attachment_id   INTEGER REFERENCES attachments (id) ON DELETE SET NULL,
    meta            TEXT NOT NULL DEFAULT '{}',
    created_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, seq)
);

-- A web chat: the visitor's pre-chat form and the (hashed) resume token of their browser.
CREATE TABLE chat_sessions (
    conversation_id INTEGER PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    token_hash      TEXT NOT NULL UNIQUE,
    visitor_name    TEXT,
    visitor_email   TEXT,
    visitor_phone   TEXT,
    topic           TEXT,
    page            TEXT,
    created_at      INTEGER NOT NULL
);

-- Canned responses for agents; `language` NULL = any language.
CREATE TABLE canned_responses (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    language   TEXT,
    created_at INTEGER NOT NULL
);
