CREATE INDEX tasks_user_id_created_at ON tasks (user_id, created_at);
DROP INDEX tasks_user_id_created_at_id;
