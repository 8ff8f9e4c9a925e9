-- Back to transaction-id stamps and a trigger that renders the JSON (migrations 0004 and 0005
-- as the previous release made them), so that release can run on the database again. Existing
-- rows get the id of this transaction: its feed tokens report every task once more.
ALTER TABLE tasks DROP COLUMN json;
DROP FUNCTION taskd_task_json(bigint, text, text, boolean, timestamptz, timestamptz, bigint);
CREATE FUNCTION taskd_task_json(task tasks) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_json(rendered)::text
    FROM (
        SELECT task.id,
               task.title,
               task.description,
               task.is_completed,
               to_char(task.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS created_at,
               to_char(task.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS updated_at,
               task.user_id
    ) AS rendered
$$;
ALTER TABLE tasks ADD COLUMN json text;
UPDATE tasks SET json = taskd_task_json(tasks);
ALTER TABLE tasks ALTER COLUMN json SET NOT NULL;

ALTER TABLE tasks ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE task_tombstones
    ADD COLUMN deleted_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX tasks_user_id_changed_xid ON tasks (user_id, changed_xid, id);
CREATE INDEX task_tombstones_user_id_deleted_xid ON task_tombstones (user_id, deleted_xid, id);

CREATE FUNCTION taskd_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    NEW.json := taskd_task_json(NEW);
    RETURN NEW;
END
$$;
CREATE TRIGGER tasks_stamp_change BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION taskd_stamp_change();

DROP INDEX task_tombstones_user_id_version;
DROP INDEX tasks_user_id_version;
ALTER TABLE task_tombstones DROP COLUMN version;
ALTER TABLE tasks DROP COLUMN version;
ALTER TABLE users DROP COLUMN version;
