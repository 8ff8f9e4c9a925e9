-- Users are provisioned from verified JWT subjects; the id is Better Auth's user id.
CREATE TABLE users (
    id bigint PRIMARY KEY CHECK (id > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
