-- Queries of live updates (taskd/db/listener.py).

-- name: notify_change
-- Wakes the event streams of the user, in every worker, once this transaction commits (at once
-- in autocommit): the payload is `user_id:version`, and nothing more. Sent on the connection
-- that wrote, right after the write; it touches no table, so on Citus it runs, and notifies,
-- on the coordinator, where the listeners listen.
SELECT pg_notify('taskd_changes', %(user_id)s::text || ':' || %(version)s::text);
