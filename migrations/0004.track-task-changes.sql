-- depends: 0002.create-tasks
-- Deleted tasks, reported by the change feed (GET /api/{user_id}/tasks/changes) for 30 days;
-- tokens older than that must resync. Migration 0008 adds what orders the feed, per-user
-- versions. (Before it, this migration also stamped each write with its transaction id; 0008
-- drops those stamps from databases that have them.)
CREATE TABLE task_tombstones (
    user_id bigint NOT NULL,
    id bigint NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
