CREATE OR REPLACE FUNCTION taskd_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

ALTER TABLE tasks DROP COLUMN json;
DROP FUNCTION taskd_task_json(tasks);
