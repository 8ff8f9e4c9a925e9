-- depends: 0007.index-tasks-in-list-order
-- What changed since a client's last look is data in the user's own rows, not the transaction
-- ids of the one server that wrote them: each user has a change counter, every write bumps it in
-- its own statement and stamps the task (or its tombstone) with the new value. The user row's
-- lock orders one user's writes, so versions are handed out in commit order, without gaps a
-- reader could overtake. Versions survive pg_dump/pg_restore, failover, replication and Citus
-- shard moves; the xid stamps they replace did not (CONTRACT §4).
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN version bigint;
ALTER TABLE task_tombstones ADD COLUMN version bigint;

-- No more rendering or stamping by trigger: Citus cannot distribute a table with a trigger, and
-- each write now says what it changed.
DROP TRIGGER tasks_stamp_change ON tasks;
DROP FUNCTION taskd_stamp_change();

-- Existing changes numbered per user by when they were made. Feed tokens issued before this
-- migration are refused (410: start again without since), so no order needs to match theirs.
WITH changes AS (
    SELECT user_id, id, false AS deleted, updated_at AS changed_at FROM tasks
    UNION ALL
    SELECT user_id, id, true, deleted_at FROM task_tombstones
), numbered AS (
    SELECT user_id, id, deleted,
           row_number() OVER (PARTITION BY user_id ORDER BY changed_at, deleted, id) AS version
    FROM changes
), stamped_tasks AS (
    UPDATE tasks
    SET version = numbered.version
    FROM numbered
    WHERE NOT numbered.deleted AND (tasks.user_id, tasks.id) = (numbered.user_id, numbered.id)
), stamped_tombstones AS (
    UPDATE task_tombstones
    SET version = numbered.version
    FROM numbered
    WHERE numbered.deleted
      AND (task_tombstones.user_id, task_tombstones.id) = (numbered.user_id, numbered.id)
)
UPDATE users
SET version = last.version
FROM (SELECT user_id, max(version) AS version FROM numbered GROUP BY user_id) AS last
WHERE users.id = last.user_id;

-- No default: a task inserted by hand without its version is refused instead of silently
-- missing from the feed (README: writes outside the API).
ALTER TABLE tasks ALTER COLUMN version SET NOT NULL;
ALTER TABLE task_tombstones ALTER COLUMN version SET NOT NULL;
CREATE INDEX tasks_user_id_version ON tasks (user_id, version);
CREATE INDEX task_tombstones_user_id_version ON task_tombstones (user_id, version);

-- The transaction-id stamps of databases migrated before this release (0004 and 0005 made them
-- then); their indexes go with them.
ALTER TABLE tasks DROP COLUMN IF EXISTS changed_xid;
ALTER TABLE task_tombstones DROP COLUMN IF EXISTS deleted_xid;

-- A task's JSON (the Task of CONTRACT §2), rendered by PostgreSQL whenever the row is written,
-- now as a generated column: no write statement mentions it, a write by hand cannot leave it
-- stale, and the shard that stores a row renders it (Citus accepts no STABLE function of
-- columns in a distributed write, and the id is known there). A generated column needs an
-- IMMUTABLE function, and this one is in fact: the timestamps are converted to UTC before
-- to_char, whose pattern has no locale- or setting-dependent part. to_json of a named row is
-- compact JSON ({"id":1,...}); json_build_object adds spaces.
ALTER TABLE tasks DROP COLUMN json;
DROP FUNCTION taskd_task_json(tasks);
CREATE FUNCTION taskd_task_json(
    id bigint,
    title text,
    description text,
    is_completed boolean,
    created_at timestamptz,
    updated_at timestamptz,
    user_id bigint
) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN to_json(rendered)::text
    FROM (
        SELECT id,
               title,
               description,
               is_completed,
               to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS created_at,
               to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS updated_at,
               user_id
    ) AS rendered;
END
$$;
ALTER TABLE tasks ADD COLUMN json text NOT NULL GENERATED ALWAYS AS (
    taskd_task_json(id, title, description, is_completed, created_at, updated_at, user_id)
) STORED;
