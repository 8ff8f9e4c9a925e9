-- `taskd migrate --distribute` on a Citus coordinator (docs/SCALING.md). Statements on the
-- schema, not on one user's rows, so the loader's user_id rule does not apply to them.

-- name: citus_version
-- No row when the database has no Citus.
SELECT extversion FROM pg_extension WHERE extname = 'citus';

-- name: distributed_tables
SELECT logicalrelid::text FROM pg_dist_partition ORDER BY logicalrelid::text;

-- name: distribute
-- Every table of user data, distributed by its user and co-located with users, so that all of
-- one user's rows live on one shard group and each statement on them runs on one worker;
-- users first, because the others' foreign keys refer to it. A table that is already
-- distributed is left as it is, so a second run changes nothing. Rows a table had before are
-- copied to its shards; the coordinator's now invisible local copy is then truncated.
-- Then taskd's own functions (taskd_task_json, called in writes that run on the workers) are
-- created on the workers: Citus propagates CREATE FUNCTION only once it is installed (and not
-- while a function depends on a table it does not manage), so a database migrated before
-- Citus has them on the coordinator alone.
DO $$
DECLARE
    plan record;
    taskd_function record;
    newly_distributed regclass[] := '{}';
    table_with_local_rows regclass;
BEGIN
    -- One connection per worker for the whole transaction: Citus requires it of a
    -- transaction that distributes a function after it created shards.
    SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
    FOR plan IN
        SELECT tables.relation::regclass AS relation, distribution_column, colocate_with
        FROM (VALUES (1, 'users', 'id', 'default'),
                     (2, 'tasks', 'user_id', 'users'),
                     (3, 'task_tombstones', 'user_id', 'users'),
                     (4, 'idempotency_keys', 'user_id', 'users'))
            AS tables (step, relation, distribution_column, colocate_with)
        WHERE NOT EXISTS (
            SELECT FROM pg_dist_partition WHERE logicalrelid = tables.relation::regclass
        )
        ORDER BY step
    LOOP
        PERFORM create_distributed_table(
            plan.relation, plan.distribution_column, colocate_with => plan.colocate_with
        );
        newly_distributed := newly_distributed || plan.relation;
    END LOOP;
    FOR taskd_function IN
        SELECT p.oid::regprocedure AS signature
        FROM pg_proc AS p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.proname LIKE 'taskd\_%'
          AND NOT EXISTS (
              SELECT FROM pg_catalog.pg_dist_object AS distributed
              WHERE distributed.classid = 'pg_proc'::regclass AND distributed.objid = p.oid
          )
    LOOP
        PERFORM create_distributed_function(taskd_function.signature);
    END LOOP;
    -- Only once all are distributed: truncating users cascades along the foreign keys.
    FOREACH table_with_local_rows IN ARRAY newly_distributed LOOP
        PERFORM truncate_local_data_after_distributing_table(table_with_local_rows);
    END LOOP;
END
$$;
