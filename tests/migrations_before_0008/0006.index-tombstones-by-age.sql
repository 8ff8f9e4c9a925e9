-- depends: 0004.track-task-changes
-- Every delete also forgets the user's tombstones past retention; without this index that
-- scanned all of the user's tombstones, so deletes slowed down as they piled up.
CREATE INDEX task_tombstones_user_id_deleted_at ON task_tombstones (user_id, deleted_at);
