-- depends: 0007.index-tasks-in-list-order
-- A deployment's kind of user ids (taskd/user_ids.py), chosen once: `taskd migrate` passes
-- TASKD_USER_IDS in the session setting taskd.user_ids. "integer" (the default, and what every
-- database had before this migration) changes nothing. "text" (Better Auth's default ids) turns
-- every user_id column into text, users.id checked against the grammar of taskd/user_ids.py;
-- only while the database has no users, since integer ids are no text ids Better Auth issues.
-- From then on the type of users.id is the record of the choice.
DO $$
BEGIN
    IF current_setting('taskd.user_ids', true) IS DISTINCT FROM 'text' THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT FROM users) THEN
        RAISE EXCEPTION 'text user ids can only be chosen for a database without users';
    END IF;
    -- A foreign key and the key it references change type together, so the keys go first.
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
END
$$;
