-- Queries on tasks. Every query binds %(user_id)s (the loader refuses one that does not), and
-- PostgreSQL renders each task as JSON text so no per-row Python objects are built.

-- fragment: utc_text
-- to_char() format of a timestamp in RFC 3339, UTC, with microseconds
'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'

-- fragment: task_json
-- Rendered by PostgreSQL when the task is written (migration 0005), as the Task of CONTRACT §2.
json

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
-- Leaves a tombstone for the change feed, and forgets this user's tombstones past retention.
WITH deleted AS (
    DELETE FROM tasks
    WHERE user_id = %(user_id)s AND id = %(task_id)s AND {if_match}
    RETURNING user_id, id
), expired AS (
    DELETE FROM task_tombstones
    WHERE user_id = %(user_id)s
      AND deleted_at < now() - make_interval(days => %(retention_days)s)
)
INSERT INTO task_tombstones (user_id, id) SELECT user_id, id FROM deleted RETURNING id;

-- fragment: user_task_count
-- how many tasks the user has
(SELECT count(*) FROM tasks WHERE user_id = %(user_id)s)

-- fragment: written_since
-- a tasks row last written by a transaction that the snapshot `since.snapshot` did not see, in
-- whatever order the writers committed: every write stamps its row's changed_xid (migration 0004)
changed_xid >= pg_snapshot_xmin(since.snapshot)
AND NOT pg_visible_in_snapshot(changed_xid, since.snapshot)

-- fragment: deleted_since
-- a tombstone left by a transaction that the snapshot `since.snapshot` did not see
deleted_xid >= pg_snapshot_xmin(since.snapshot)
AND NOT pg_visible_in_snapshot(deleted_xid, since.snapshot)

-- fragment: list_filter
-- The tasks a list request selects, before paging: the user's, with the `completed` and `q` filters.
user_id = %(user_id)s
AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
AND (%(pattern)s::text IS NULL
     OR title ILIKE %(pattern)s::text OR description ILIKE %(pattern)s::text)

-- fragment: created_us
-- created_at as microseconds since 1970, an integer that is cheap to send and compare
(extract(epoch FROM created_at) * 1000000)::bigint

-- name: list_tasks
-- One page in keyset order, as the comma-separated stored JSON of its tasks (the caller adds the
-- brackets): one value instead of a row per task, UTF-8 bytes sent as they are. Also the
-- (sort value, id) of the page's last row, the snapshot it was read in and the user's number of
-- tasks then (see tasks_changed_since), whether another row follows the page, and
-- {row_arrays}: for the orders a cached page can be patched in, each row's id, created_us and
-- length of JSON, in page order (taskd/page_cache.py); NULLs for the others.
-- The index on ({sort_column}, id) hands the rows over in order; the aggregates take them in that
-- order, as PostgreSQL does for input from a sorted subquery (docs, "Aggregate Expressions"),
-- which spares an ORDER BY inside the aggregate: a second sort of the whole page.
-- {sort_column}, {direction} and {after} come from the fixed table SORTS in taskd/db/tasks.py,
-- one variant of this query per allowed sort, made at load time.
WITH page AS (
    SELECT {task_json} AS task, {sort_column} AS sort_value, id, {created_us} AS created_us
    FROM tasks
    WHERE {list_filter}
      AND (%(after_id)s::bigint IS NULL
           OR ({sort_column}, id) {after} (%(after_value)s, %(after_id)s::bigint))
    ORDER BY {sort_column} {direction}, id {direction}
    LIMIT %(limit)s::bigint
), summary AS (
    SELECT string_agg(task, ',') AS tasks, count(*) AS size,
           (array_agg(sort_value))[count(*)] AS last_value, (array_agg(id))[count(*)] AS last_id,
           {row_arrays}
    FROM page
)
SELECT coalesce(tasks, ''), last_value, last_id,
       pg_current_snapshot()::text,
       {user_task_count},
       size = %(limit)s::bigint AND (
           SELECT true FROM tasks
           WHERE {list_filter} AND ({sort_column}, id) {after} (last_value, last_id)
           ORDER BY {sort_column} {direction}, id {direction}
           LIMIT 1
       ) IS NOT NULL,
       ids, created_us, sizes
FROM summary;

-- name: tasks_changed_since
-- What changed in the user's tasks since the snapshot %(since)s, for a cached list page: this
-- statement's snapshot, the user's number of tasks now, the ids deleted through the API, and up
-- to %(max_written)s of the tasks written, as ids, created_us and JSON texts.
WITH since AS (
    SELECT %(since)s::pg_snapshot AS snapshot
), written AS (
    SELECT id, {created_us} AS created_us, {task_json} AS task
    FROM tasks, since
    WHERE user_id = %(user_id)s AND {written_since}
    LIMIT %(max_written)s
)
SELECT pg_current_snapshot()::text,
       {user_task_count},
       ARRAY(SELECT id FROM task_tombstones, since WHERE user_id = %(user_id)s AND {deleted_since}),
       ARRAY(SELECT id FROM written),
       ARRAY(SELECT created_us FROM written),
       ARRAY(SELECT task FROM written);

-- name: task_changes
-- One page of the change feed: tasks written and tasks deleted by transactions that the
-- snapshot %(since)s did not see (commit order, whatever order their ids were taken in) and,
-- while a run of pages lasts, that %(upto)s did see; in (transaction, id) order after the
-- position (%(after_xid)s, %(after_id)s). Always one row or more: the first column is this
-- statement's own snapshot, the next token's, joined to the page's rows (if any).
WITH since AS (
    SELECT %(since)s::pg_snapshot AS snapshot
), changes AS (
    SELECT changed_xid AS xid, id, {task_json} AS task, NULL AS deleted_at
    FROM tasks, since
    WHERE user_id = %(user_id)s AND {written_since}
    UNION ALL
    SELECT deleted_xid, id, NULL,
           to_char(deleted_at AT TIME ZONE 'UTC', {utc_text})
    FROM task_tombstones, since
    WHERE user_id = %(user_id)s
      AND %(with_deletions)s::boolean
      AND {deleted_since}
), page AS (
    SELECT * FROM changes
    WHERE (%(upto)s::pg_snapshot IS NULL OR pg_visible_in_snapshot(xid, %(upto)s::pg_snapshot))
      AND (xid, id) > (%(after_xid)s::xid8, %(after_id)s::bigint)
    ORDER BY xid, id
    LIMIT %(limit)s
)
SELECT pg_current_snapshot()::text, page.xid::text, page.id, page.task, page.deleted_at
FROM (SELECT 1) AS statement LEFT JOIN page ON true
ORDER BY page.xid, page.id;
