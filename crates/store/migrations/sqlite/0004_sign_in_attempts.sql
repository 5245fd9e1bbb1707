-- The per-account lockout count: one row per account (keyed by User id, never by a typed
-- email, so unknown addresses add no rows) with the attempts reserved since its last success
-- or lock, the number of locks so far, and the end of the current lock. Instants are
-- milliseconds since 1970 in UTC. A successful sign-in deletes the row.
CREATE TABLE sign_in_attempts (
    account TEXT PRIMARY KEY,
    attempts BIGINT NOT NULL,
    locks BIGINT NOT NULL,
    locked_until BIGINT,
    last_attempt_at BIGINT NOT NULL
);
