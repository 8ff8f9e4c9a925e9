-- Queries on users.

-- name: provision_user
-- A user seen for the first time gets a row, so the tasks foreign key holds.
INSERT INTO users (id) VALUES (%(user_id)s) ON CONFLICT (id) DO NOTHING;
