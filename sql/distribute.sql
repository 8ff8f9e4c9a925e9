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
-- taskd_task_json, which renders the JSON on the workers, needs no step of its own: it is a
-- dependency of tasks (the generated column json), which Citus creates on the workers when it
-- distributes tasks, even in a database migrated before Citus was installed.
DO $$
DECLARE
    plan record;
    newly_distributed regclass[] := '{}';
    table_with_local_rows regclass;
BEGIN
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
    -- Only once all are distributed: truncating users cascades along the foreign keys.
    FOREACH table_with_local_rows IN ARRAY newly_distributed LOOP
        PERFORM truncate_local_data_after_distributing_table(table_with_local_rows);
    END LOOP;
END
$$;
