-- depends: 0006.index-tombstones-by-age
-- The default list order is (created_at, id), both descending. With id in the index, a page is
-- read in order straight from it, instead of fetched and then sorted whole; the index still
-- serves everything the (user_id, created_at) one did.
CREATE INDEX tasks_user_id_created_at_id ON tasks (user_id, created_at, id);
DROP INDEX tasks_user_id_created_at;
