-- Contact Hub foundation schema (SQLite). migrations/postgres/ holds the same schema for PostgreSQL.
-- Times are unix milliseconds (INTEGER); calendar dates are ISO 'YYYY-MM-DD' text; money is minor units.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed-login back-off, per lower-cased username; kept in the store so it survives restarts.
CREATE TABLE login_failures (
    username        TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    locked_until    INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
);

CREATE TABLE queues (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL
);

CREATE TABLE customers (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    external_ref      TEXT UNIQUE,
    kind              TEXT NOT NULL CHECK (kind IN ('person', 'company')),
    name              TEXT NOT NULL,
    name_search       TEXT NOT NULL,
    tier              TEXT NOT NULL,
    tags              TEXT NOT NULL DEFAULT '',
    preferred_channel TEXT,
    language          TEXT,
    do_not_call       INTEGER NOT NULL DEFAULT 0,
    do_not_email      INTEGER NOT NULL DEFAULT 0,
    notes             TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX customers_name_search ON customers (name_search);

-- Phone and fax in E.164, email lower-cased, chat visitor ids as given: one owner per identity.
CREATE TABLE customer_identities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'fax', 'chat')),
    value       TEXT NOT NULL,
    UNIQUE (kind, value)
);
CREATE INDEX customer_identities_customer ON customer_identities (customer_id);
CREATE INDEX customer_identities_value ON customer_identities (value);

-- The archive: orders/contracts, payments/receivables, transactions, returns/discounts, documents.
CREATE TABLE archive_records (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id  INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    category     TEXT NOT NULL CHECK (category IN ('order', 'payment', 'transaction', 'return', 'document')),
    reference    TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    amount_minor INTEGER,
    currency     TEXT,
    status       TEXT NOT NULL DEFAULT '',
    occurred_on  TEXT,
    expires_on   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (customer_id, category, reference)
);

CREATE TABLE cases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    subject     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'pending', 'closed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX cases_customer_status ON cases (customer_id, status);

CREATE TABLE contacts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL CHECK (channel IN ('voice', 'email', 'fax', 'chat', 'callback', 'outbound')),
    direction    TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    customer_id  INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    case_id      INTEGER REFERENCES cases (id) ON DELETE SET NULL,
    queue        TEXT,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'offered', 'connected', 'wrap_up', 'closed', 'abandoned', 'failed')),
    priority     INTEGER NOT NULL DEFAULT 0,
    subject      TEXT,
    agent_id     INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    connected_at INTEGER,
    ended_at     INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX contacts_customer_created ON contacts (customer_id, created_at DESC);
CREATE INDEX contacts_state_channel ON contacts (state, channel);

-- Append-only event logs: every contact and agent change; reports and live metrics read these.
CREATE TABLE contact_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    state      TEXT,
    agent_id   INTEGER,
    queue      TEXT,
    data       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX contact_events_contact ON contact_events (contact_id, id);
CREATE INDEX contact_events_at ON contact_events (at);

CREATE TABLE agent_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES users (id),
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    state    TEXT,
    reason   TEXT,
    data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX agent_events_agent ON agent_events (agent_id, id);
CREATE INDEX agent_events_at ON agent_events (at);

CREATE TRIGGER contact_events_no_update BEFORE UPDATE ON contact_events
BEGIN SELECT RAISE(ABORT, 'contact_events is append-only'); END;
CREATE TRIGGER contact_events_no_delete BEFORE DELETE ON contact_events
BEGIN SELECT RAISE(ABORT, 'contact_events is append-only'); END;
CREATE TRIGGER agent_events_no_update BEFORE UPDATE ON agent_events
BEGIN SELECT RAISE(ABORT, 'agent_events is append-only'); END;
CREATE TRIGGER agent_events_no_delete BEFORE DELETE ON agent_events
BEGIN SELECT RAISE(ABORT, 'agent_events is append-only'); END;
