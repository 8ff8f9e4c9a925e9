-- Queries on tasks. Every query binds %(user_id)s (the loader refuses one that does not), and
-- PostgreSQL renders each task as JSON text so no per-row Python objects are built.
--
-- Every write bumps the user's version (users.version, migration 0008) and stamps what it wrote
-- with the new value, in one transaction: the user row's lock orders one user's writes, so a
-- reader that sees version V has seen every change up to V. Several writes of one user may share
-- a transaction (taskd/db/batches.py), one after the other, each taking its own version. Every
-- statement touches one user's rows and uses only what Citus accepts in a distributed
-- modification, so it runs on the user's shard: IMMUTABLE functions of columns, and now() on its
-- own (evaluated before routing).

-- fragment: utc_text
-- to_char() format of a timestamp in RFC 3339, UTC, with microseconds
'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'

-- fragment: task_json
-- Rendered by PostgreSQL whenever the row is written (a generated column, migration 0008), as the
-- Task of CONTRACT §2.
json

-- fragment: user_version
-- the user's version: every change of theirs up to it is visible (0 before their first write)
coalesce((SELECT version FROM users WHERE id = %(user_id)s), 0)

-- fragment: if_match
-- The If-Match condition, checked against the row the write is about to change: NULL means any
-- version will do. In the same statement as the write, so no other write can slip in between.
(%(if_match)s::bigint[] IS NULL OR version = ANY (%(if_match)s::bigint[]))

-- fragment: the_task
-- the task a write is about, as If-Match names it
user_id = %(user_id)s AND id = %(task_id)s AND {if_match}

-- fragment: bump_version
-- The user's next version, taken only when the task the write is about exists (and matches
-- If-Match). It locks the user row until the write commits: the one lock every write of a user
-- takes first, so one user's writes take their versions in the order they commit, and cannot
-- wait for each other's rows.
UPDATE users SET version = version + 1
WHERE id = %(user_id)s AND EXISTS (SELECT FROM tasks WHERE {the_task})
RETURNING version

-- fragment: next_updated_at
-- now, but strictly later than before, so updated_at changes on every change (in UTC timestamps,
-- whose arithmetic is IMMUTABLE, unlike timestamptz + interval)
greatest(now(), ((updated_at AT TIME ZONE 'UTC') + interval '1 microsecond') AT TIME ZONE 'UTC')

-- name: take_next_version
-- A create's first statement (taskd/db/tasks.py sends the two in one transaction, in one round
-- trip): provisions the user, and takes and locks their next version, which it keeps for the
-- second in a setting local to the transaction. set_config runs where the SELECT runs: with
-- Citus, on the coordinator, which then evaluates current_setting() for the insert.
WITH taken AS (
    INSERT INTO users AS known (id, version) VALUES (%(user_id)s, 1)
    ON CONFLICT (id) DO UPDATE SET version = known.version + 1
    RETURNING version
)
SELECT set_config('taskd.version', version::text, true) FROM taken;

-- name: insert_task
-- A create's second statement: the task, stamped with the version the first one took. VALUES,
-- not SELECT FROM users: Citus cannot run an INSERT ... SELECT into a table with an identity on
-- the user's shard (the coordinator evaluates nextval), and would read users on every shard and
-- insert through the coordinator with a two-phase commit.
INSERT INTO tasks (user_id, title, description, created_at, updated_at, version)
VALUES (%(user_id)s, %(title)s, %(description)s, now(), now(),
        current_setting('taskd.version')::bigint)
RETURNING id, version, json;

-- name: get_task
SELECT id, version, json FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s;

-- name: task_exists
SELECT true FROM tasks WHERE user_id = %(user_id)s AND id = %(task_id)s;

-- name: update_task
-- A NULL parameter leaves its column as it is.
WITH bumped AS (
    {bump_version}
)
UPDATE tasks
SET title = coalesce(%(title)s, title),
    description = coalesce(%(description)s, description),
    is_completed = coalesce(%(is_completed)s, is_completed),
    updated_at = {next_updated_at},
    version = (SELECT version FROM bumped)
WHERE {the_task}
RETURNING id, version, json;

-- name: toggle_task
WITH bumped AS (
    {bump_version}
)
UPDATE tasks
SET is_completed = NOT is_completed,
    updated_at = {next_updated_at},
    version = (SELECT version FROM bumped)
WHERE {the_task}
RETURNING id, version, json;

-- A delete is three statements in one transaction (taskd/db/tasks.py): each can run on the
-- user's Citus shard, which an INSERT led by a data-modifying WITH cannot.

-- name: take_version_for_delete
{bump_version};

-- name: insert_tombstone
-- The deleted task's tombstone, for the change feed, stamped with the version just taken.
INSERT INTO task_tombstones (user_id, id, version)
SELECT tasks.user_id, tasks.id, users.version
FROM tasks JOIN users ON users.id = tasks.user_id
WHERE tasks.user_id = %(user_id)s AND tasks.id = %(task_id)s
  AND (%(if_match)s::bigint[] IS NULL OR tasks.version = ANY (%(if_match)s::bigint[]));

-- name: delete_task
-- Also forgets this user's tombstones past retention.
WITH expired AS (
    DELETE FROM task_tombstones
    WHERE user_id = %(user_id)s
      AND deleted_at < now() - make_interval(days => %(retention_days)s)
)
DELETE FROM tasks
WHERE {the_task}
RETURNING id;

-- fragment: user_task_count
-- how many tasks the user has
(SELECT count(*) FROM tasks WHERE user_id = %(user_id)s)

-- fragment: list_filter
-- The tasks a list request selects, before paging: the user's, with the `completed` and `q` filters.
user_id = %(user_id)s
AND (%(completed)s::boolean IS NULL OR is_completed = %(completed)s::boolean)
AND (%(pattern)s::text IS NULL
     OR title ILIKE %(pattern)s::text OR description ILIKE %(pattern)s::text)

-- name: list_tasks
-- One page in keyset order, as the comma-separated stored JSON of its tasks (the caller adds the
-- brackets): one value instead of a row per task, UTF-8 bytes sent as they are. Also the
-- (sort value, id) of the page's last row, the user's version and number of tasks when it was
-- read (see tasks_changed_since), whether another row follows the page, and
-- {row_arrays}: for a list whose page a cache may patch (the first page of a user's tasks in
-- created_at order), each row's id, created_at and length of JSON, in page order
-- (taskd/page_cache.py);
-- NULLs for the others, which spares PostgreSQL a quarter of a 1000-task page's instructions.
-- The index on ({sort_column}, id) hands the rows over in order; the aggregates take them in that
-- order, as PostgreSQL does for input from a sorted subquery (docs, "Aggregate Expressions"),
-- which spares an ORDER BY inside the aggregate: a second sort of the whole page.
-- {sort_column}, {direction} and {after} come from the fixed table SORTS in taskd/db/tasks.py,
-- one variant of this query per allowed sort, made at load time.
WITH page AS (
    SELECT {task_json} AS task, {sort_column} AS sort_value, id, created_at
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
       {user_version},
       {user_task_count},
       size = %(limit)s::bigint AND (
           SELECT true FROM tasks
           WHERE {list_filter} AND ({sort_column}, id) {after} (last_value, last_id)
           ORDER BY {sort_column} {direction}, id {direction}
           LIMIT 1
       ) IS NOT NULL,
       ids, created_at, sizes
FROM summary;

-- name: tasks_changed_since
-- What changed in the user's tasks since a cached list page was read at version %(since)s, when
-- the user had %(since_count)s tasks: the user's version and number of tasks now (the count
-- also catches rows deleted or inserted by hand, which take no version); when either moved and
-- the page has more after it, how many of the user's tasks come no later than its last one,
-- (%(last_value)s, %(last_id)s), in its order ({within_page}: one variant per direction, made
-- at load time); the ids deleted through the API; and up to %(max_written)s of the tasks
-- written, as ids, created_at and JSON texts. When nothing changed: an index lookup of the
-- user, a count over the user's index entries and two empty index range scans.
WITH written AS (
    SELECT id, created_at, {task_json} AS task
    FROM tasks
    WHERE user_id = %(user_id)s AND version > %(since)s::bigint
    LIMIT %(max_written)s
), now AS (
    SELECT {user_version} AS version, {user_task_count} AS task_count
)
SELECT version,
       task_count,
       CASE WHEN %(last_id)s::bigint IS NOT NULL
                 AND (version, task_count) <> (%(since)s::bigint, %(since_count)s::bigint) THEN (
           SELECT count(*) FROM tasks
           WHERE user_id = %(user_id)s
             AND (created_at, id) {within_page} (%(last_value)s::timestamptz, %(last_id)s::bigint)
       ) END,
       ARRAY(SELECT id FROM task_tombstones
             WHERE user_id = %(user_id)s AND version > %(since)s::bigint),
       ARRAY(SELECT id FROM written),
       ARRAY(SELECT created_at FROM written),
       ARRAY(SELECT task FROM written)
FROM now;

-- fragment: after_position
-- after the feed position (%(after)s, %(after_id)s): a later version, or the same version and a
-- later task id (NULL: none of that version; one write through the API stamps one row, one by
-- hand may stamp many); and no later than version %(upto)s while a run of pages lasts
version >= %(after)s::bigint
AND (version, id) > (%(after)s::bigint, coalesce(%(after_id)s::bigint, 9223372036854775807))
AND (%(upto)s::bigint IS NULL OR version <= %(upto)s::bigint)

-- name: task_changes
-- One page of the change feed: tasks written and tasks deleted after a position (and up to a
-- version, while a run of pages lasts), in version order (the order their writes committed in). Always one row or more: the first
-- column is the user's version now, the next token's when the page is the last, joined to the
-- page's rows (if any). Read in one statement, so the page holds every change up to it.
WITH changes AS (
    SELECT version, id, {task_json} AS task, NULL AS deleted_at
    FROM tasks
    WHERE user_id = %(user_id)s AND {after_position}
    UNION ALL
    SELECT version, id, NULL, to_char(deleted_at AT TIME ZONE 'UTC', {utc_text})
    FROM task_tombstones
    WHERE user_id = %(user_id)s
      AND %(with_deletions)s::boolean
      AND {after_position}
), page AS (
    SELECT * FROM changes
    ORDER BY version, id
    LIMIT %(limit)s
)
SELECT {user_version}, page.version, page.id, page.task, page.deleted_at
FROM (SELECT 1) AS statement LEFT JOIN page ON true
ORDER BY page.version, page.id;
