-- Back to integer user ids as migration 0008 left them, which a database of text ids can take
-- only while it has no users. A database of integer ids has nothing to undo.
DO $$
DECLARE
    definition text;
BEGIN
    IF format_type((SELECT atttypid FROM pg_attribute
                    WHERE attrelid = 'users'::regclass AND attname = 'id'), NULL) = 'bigint' THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM users) THEN
        RAISE EXCEPTION
            'a database with text user ids cannot go back to integer ids while it has users';
    END IF;
    definition := pg_get_functiondef(
        'taskd_task_json(bigint, text, text, boolean, timestamptz, timestamptz, text)'::regprocedure
    );
    ALTER TABLE tasks DROP COLUMN json;
    DROP FUNCTION taskd_task_json(bigint, text, text, boolean, timestamptz, timestamptz, text);
    EXECUTE replace(definition, 'user_id text', 'user_id bigint');
    ALTER TABLE tasks DROP CONSTRAINT tasks_user_id_fkey;
    ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_user_id_fkey;

    ALTER TABLE users
        DROP CONSTRAINT users_id_check,
        ALTER COLUMN id TYPE bigint USING id::bigint,
        ADD CONSTRAINT users_id_check CHECK (id > 0);
    ALTER TABLE tasks ALTER COLUMN user_id TYPE bigint USING user_id::bigint;
    ALTER TABLE task_tombstones ALTER COLUMN user_id TYPE bigint USING user_id::bigint;
    ALTER TABLE idempotency_keys ALTER COLUMN user_id TYPE bigint USING user_id::bigint;

    ALTER TABLE tasks ADD CONSTRAINT tasks_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
    ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_user_id_fkey
        FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE;
    ALTER TABLE tasks ADD COLUMN json text NOT NULL GENERATED ALWAYS AS (
        taskd_task_json(id, title, description, is_completed, created_at, updated_at, user_id)
    ) STORED;
END
$$;
