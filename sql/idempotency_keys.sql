-- Queries on idempotency keys: what a POST with an Idempotency-Key created. A key counts for
-- IDEMPOTENCY_KEY_TTL (24 hours, bound as ttl) after its first use; then it is free again, and
-- the user's next POST with a key deletes it.

-- name: forget_expired_idempotency_keys
-- A bounded batch, so no request pays for a long backlog: each keyed POST sweeps up to 100 old
-- keys, faster than it adds one. Keys another transaction holds are left for the next sweep.
-- MATERIALIZED: a subquery in the WHERE clause may be run again for each row, finding another
-- 100 each time.
WITH batch AS MATERIALIZED (
    SELECT key FROM idempotency_keys
    WHERE user_id = %(user_id)s AND created_at < now() - %(ttl)s
    LIMIT 100
    FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency_keys
WHERE user_id = %(user_id)s AND key IN (SELECT key FROM batch);

-- name: claim_idempotency_key
-- true when this transaction now holds the key: a new one, or one whose time ran out (used
-- before %(expired_before)s, a constant: Citus wants the ON CONFLICT condition IMMUTABLE). A key
-- in use returns no row, but stays locked by this transaction until it ends. Two transactions
-- claiming one key meet on the primary key: the second waits for the first to commit, then finds
-- the key in use. The user is provisioned before, in the same transaction, for the foreign key.
INSERT INTO idempotency_keys AS held (user_id, key, fingerprint)
VALUES (%(user_id)s, %(key)s, %(fingerprint)s)
ON CONFLICT (user_id, key) DO UPDATE
SET fingerprint = excluded.fingerprint,
    task_id = NULL,
    task_etag = NULL,
    task_json = NULL,
    created_at = excluded.created_at
WHERE held.created_at < %(expired_before)s::timestamptz
RETURNING true;

-- name: record_idempotent_task
UPDATE idempotency_keys
SET task_id = %(task_id)s, task_etag = %(task_etag)s, task_json = %(task_json)s
WHERE user_id = %(user_id)s AND key = %(key)s;

-- name: get_idempotency_key
SELECT fingerprint, task_id, task_etag, task_json
FROM idempotency_keys
WHERE user_id = %(user_id)s AND key = %(key)s;
