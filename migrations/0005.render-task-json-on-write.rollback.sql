DROP TRIGGER tasks_stamp_change ON tasks;
DROP FUNCTION taskd_stamp_change();
ALTER TABLE tasks DROP COLUMN json;
DROP FUNCTION taskd_task_json(tasks);
