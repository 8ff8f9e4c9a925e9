DROP TABLE task_tombstones;
DROP TRIGGER tasks_stamp_change ON tasks;
DROP FUNCTION taskd_stamp_change();
ALTER TABLE tasks DROP COLUMN changed_xid;
