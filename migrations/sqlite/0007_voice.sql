-- Voice: agents' desk-phone accounts (digest HA1, never the password) and call recordings.

CREATE TABLE sip_accounts (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    username   TEXT NOT NULL UNIQUE,
    realm      TEXT NOT NULL,
    -- md5(username:realm:password), as SIP digest verification needs
    ha1        TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- A recording while it is made has no duration yet; one left so by a crash is completed from
-- its file at the next start.
CREATE TABLE recordings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('call', 'voicemail')),
    path        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER,
    bytes       INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX recordings_contact ON recordings (contact_id);
