-- Queries on tasks. Every query binds %(user_id)s (the loader refuses one that does not), and
-- PostgreSQL renders each task as JSON text so no per-row Python objects are built.

-- fragment: task_json
json_build_object(
    'id', id,
    'title', title,
    'description', description,
    'is_completed', is_completed,
    'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'user_id', user_id
)::text

-- fragment: task_etag
-- A strong entity-tag (RFC 9110 §8.8.3) for this version of the task: updated_at moves on every
-- change (see touch), to the microsecond, so the tag changes with every change too.
'"' || id || '-' || to_char(updated_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || '"'

-- fragment: if_match
-- The If-Match condition, checked against the row the write is about to change: NULL means any
-- version will do. In the same statement as the write, so no other write can slip in between.
(%(if_match)s::text[] IS NULL OR {task_etag} = ANY (%(if_match)s::text[]))

-- fragment: touch
-- strictly later than before, so updated_at changes on every change
updated_at = greatest(now(), updated_at + interval '1 microsecond')

-- name: create_task
-- Provisions the user in the same statement, so a first write needs no second round trip.
WITH provisioned AS (
    INSERT INTO users (id) VALUES (%(user_id)s) ON CONFLICT (id) DO NOTHING
)
INSERT INTO tasks (user_id, title, description)
VALUES (%(user_id)s, %(title)s, %(description)s)
RETURNING id, {task_etag}, {task_json};

-- name: get_task
SELECT id, {task_etag}, {task_json} FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s;

-- name: task_exists
SELECT true FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s;

-- name: update_task
-- A NULL parameter leaves its column as it is.
UPDATE tasks
SET title = coalesce(%(title)s, title),
    description = coalesce(%(description)s, description),
    is_completed = coalesce(%(is_completed)s, is_completed),
    {touch}
WHERE user_id = %(user_id)s AND id = %(task_id)s AND {if_match}
RETURNING id, {task_etag}, {task_json};

-- name: toggle_task
UPDATE tasks
SET is_completed = NOT is_completed,
    {touch}
WHERE user_id = %(user_id)s AND id = %(task_id)s AND {if_match}
RETURNING id, {task_etag}, {task_json};

-- name: delete_task
DELETE FROM tasks
WHERE user_id = %(user_id)s AND id = %(task_id)s AND {if_match}
RETURNING id;

-- name: list_tasks
-- One page in keyset order. {sort_column}, {direction} and {after} come from the fixed table
-- SORTS in taskd/db/tasks.py, one variant of this query per allowed sort, made at load time.
SELECT {task_json}, {sort_column}, id
FROM tasks
WHERE user_id = %(user_id)s
  AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
  AND (%(pattern)s::text IS NULL
       OR title ILIKE %(pattern)s::text OR description ILIKE %(pattern)s::text)
  AND (%(after_id)s::bigint IS NULL
       OR ({sort_column}, id) {after} (%(after_value)s, %(after_id)s::bigint))
ORDER BY {sort_column} {direction}, id {direction}
LIMIT %(limit)s;
