-- Identities are looked up by value (a caller's number, a sender's address) far more than by
-- kind, and every index costs a random B-tree insert on import: one unique index on
-- (value, kind) serves both lookups and the upsert, replacing (kind, value) + (value).
-- Plain INTEGER PRIMARY KEY: ids need not be unique forever, and AUTOINCREMENT costs a
-- sqlite_sequence write per insert.
CREATE TABLE customer_identities_new (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'fax', 'chat')),
    value       TEXT NOT NULL,
    UNIQUE (value, kind)
);
INSERT INTO customer_identities_new (id, customer_id, kind, value)
    SELECT id, customer_id, kind, value FROM customer_identities;
DROP TABLE customer_identities;
ALTER TABLE customer_identities_new RENAME TO customer_identities;
CREATE INDEX customer_identities_customer ON customer_identities (customer_id);
