DROP TABLE task_tombstones;
-- Left by this migration as it was before 0008, once 0008 is rolled back.
ALTER TABLE tasks DROP COLUMN IF EXISTS changed_xid;
