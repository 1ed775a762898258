-- An identity is found by its value, so the table itself is the (value, kind) b-tree: one
-- b-tree insert per identity fewer than a rowid table beside a unique (value, kind) index, the
-- largest single cost of a CSV import (BENCHMARKS.md). `id` only orders a customer's identities
-- (the order they were given in): on SQLite it is a position within the customer, assigned by
-- the writer, not a table-wide key.
CREATE TABLE customer_identities_new (
    value       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'fax', 'chat')),
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    id          INTEGER NOT NULL,
    PRIMARY KEY (value, kind)
) WITHOUT ROWID;
INSERT INTO customer_identities_new (value, kind, customer_id, id)
    SELECT value, kind, customer_id, id FROM customer_identities;
DROP TABLE customer_identities;
ALTER TABLE customer_identities_new RENAME TO customer_identities;
CREATE INDEX customer_identities_customer ON customer_identities (customer_id, id);
