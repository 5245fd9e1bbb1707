-- Work queued by a write and done afterwards by a background sender (emails, web hooks).
-- A row is queued in the same transaction as the resources it belongs to, so it exists if
-- and only if they were written. `due_at` is a fixed-width UTC instant compared as text: a
-- row is due when `due_at` is not later than now, and claiming it moves `due_at` to the end
-- of the claim's lease, so another sender takes it over only if the first one stopped.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    abandoned BOOLEAN NOT NULL DEFAULT FALSE,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (kind, abandoned, due_at);
