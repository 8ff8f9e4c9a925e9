-- depends: 0008.per-user-versions
-- A deployment's kind of user ids (taskd/user_ids.py), chosen once: `taskd migrate` passes a
-- choice of text ids in the session setting taskd.user_ids. Without it (integer ids, the
-- default, and what every database had before this migration) nothing changes. With it
-- (Better Auth's default ids), every user id column becomes text, users.id checked against the
-- grammar of taskd/user_ids.py; only while the database has no users, since an integer id is
-- no id Better Auth's default generator issues. The type of users.id then records the choice.
DO $$
DECLARE
    definition text := pg_get_functiondef(
        'taskd_task_json(bigint, text, text, boolean, timestamptz, timestamptz, bigint)'::regprocedure
    );
BEGIN
    IF current_setting('taskd.user_ids', true) IS DISTINCT FROM 'text' THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM users) THEN
        RAISE EXCEPTION 'text user ids can only be chosen for a database without users';
    END IF;
    -- tasks.json is generated from user_id, and a foreign key changes type with its key: they
    -- go first and come back afterwards. The JSON function becomes the same function (as
    -- migration 0008 defined it) of a text user_id, which to_json renders as a JSON string.
    ALTER TABLE tasks DROP COLUMN json;
    DROP FUNCTION taskd_task_json(bigint, text, text, boolean, timestamptz, timestamptz, bigint);
    EXECUTE replace(definition, 'user_id bigint', 'user_id text');
    ALTER TABLE tasks DROP CONSTRAINT tasks_user_id_fkey;
    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_user_id_fkey;

    ALTER TABLE users
        DROP CONSTRAINT users_id_check,
        ALTER COLUMN id TYPE text,
        ADD CONSTRAINT users_id_check CHECK (id ~ '^[A-Za-z0-9]{1,64}$');
    ALTER TABLE tasks ALTER COLUMN user_id TYPE text;
    ALTER TABLE task_tombstones ALTER COLUMN user_id TYPE text;
    ALTER TABLE idempotency_keys ALTER COLUMN user_id TYPE text;

    ALTER TABLE tasks ADD CONSTRAINT tasks_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
    ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
    ALTER TABLE tasks ADD COLUMN json text NOT NULL GENERATED ALWAYS AS (
        taskd_task_json(id, title, description, is_completed, created_at, updated_at, user_id)
    ) STORED;
END
$$;
