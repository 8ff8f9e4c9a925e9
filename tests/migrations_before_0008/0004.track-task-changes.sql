-- depends: 0002.create-tasks
-- The change feed (GET /api/{user_id}/tasks/changes). Every write stamps the row with the id of
-- its transaction; a feed token is a PostgreSQL snapshot, and a change is new to a client when
-- its transaction is not visible in the client's snapshot. That is commit order, not id order:
-- a transaction that took its id early but commits late is still reported.
ALTER TABLE tasks ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- A trigger rather than each query: no write path can forget to stamp its change.
CREATE FUNCTION taskd_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER tasks_stamp_change BEFORE INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION taskd_stamp_change();

CREATE INDEX tasks_user_id_changed_xid ON tasks (user_id, changed_xid, id);

-- Deleted tasks, reported by the feed for 30 days (tokens older than that must resync).
CREATE TABLE task_tombstones (
    user_id bigint NOT NULL,
    id bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    deleted_xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (user_id, id)
);

CREATE INDEX task_tombstones_user_id_deleted_xid ON task_tombstones (user_id, deleted_xid, id);
