-- depends: 0002.create-tasks
-- What a POST with an Idempotency-Key created, so that a retry gets the same answer instead of a
-- second task. The primary key leads with user_id (keys are per user, and the table can be
-- distributed by user_id like tasks); it is also what settles two requests racing with one key.
-- task_id, task_etag and task_json are NULL only inside the transaction that claims the key and
-- creates the task, so no other transaction ever sees them NULL. No foreign key to tasks: a key
-- outlives the task it created, and a retry after a delete still gets the original answer.
CREATE TABLE idempotency_keys (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key varchar(255) NOT NULL,
    fingerprint bytea NOT NULL,
    task_id bigint,
    task_etag text,
    task_json text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
-- Finds a user's expired keys for the cleanup.
CREATE INDEX idempotency_keys_user_id_created_at ON idempotency_keys (user_id, created_at);
