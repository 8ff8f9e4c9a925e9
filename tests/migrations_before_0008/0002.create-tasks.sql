-- depends: 0001.create-users
-- The primary key leads with user_id so the table can be distributed by user_id (Citus);
-- id stays unique because the identity generates it.
CREATE TABLE tasks (
    id bigint GENERATED ALWAYS AS IDENTITY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title varchar(500) NOT NULL CHECK (title <> ''),
    description varchar(5000) NOT NULL DEFAULT '',
    is_completed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id),
    CHECK (created_at <= updated_at)
);
CREATE INDEX tasks_user_id_created_at ON tasks (user_id, created_at);
