-- ACD: agents' skills and capacity; what routing decided for each contact.

CREATE TABLE agent_profiles (
    user_id                  BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- "skill:level" pairs separated by commas, e.g. "mandarin:5,billing:3"
    skills                   TEXT NOT NULL DEFAULT '',
    voice                    BIGINT NOT NULL DEFAULT 1,
    chat                     BIGINT NOT NULL DEFAULT 3,
    email                    BIGINT NOT NULL DEFAULT 2,
    fax                      BIGINT NOT NULL DEFAULT 2,
    voice_interrupts_digital BIGINT NOT NULL DEFAULT 0,
    updated_at               BIGINT NOT NULL
);

-- Extra skills the contact needs (from routing rules), "skill:level" pairs.
ALTER TABLE contacts ADD COLUMN skills TEXT NOT NULL DEFAULT '';
-- The routing rule that placed the contact, for the event log and reports.
ALTER TABLE contacts ADD COLUMN routed_by TEXT;
