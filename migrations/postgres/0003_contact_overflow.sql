-- A routing rule's own overflow steps for this contact (JSON), replacing its queue's.
ALTER TABLE contacts ADD COLUMN overflow TEXT;
