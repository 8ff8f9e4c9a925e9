// The flow with the SDK @hey-api/openapi-ts generates (its fetch client, default plugins), against
// a live taskd: one typed function per operation of the served /openapi.json.
import {
    ascending,
    check,
    created,
    environment,
    equal,
    followPages,
    run,
    usersOf,
} from "./common.js";
import { createClient, createConfig } from "./generated/hey-api/client/index.js";
import {
    createTask,
    deleteTask,
    getOpenApiDocument,
    getTask,
    listTaskChanges,
    listTasks,
    type ListTasksData,
    type Task,
    updateTask,
} from "./generated/hey-api/index.js";

type UserId = ListTasksData["path"]["user_id"];

run("hey-api", async () => {
    const env = environment();
    // The SDK sends `auth` as a bearer token to the operations the document secures.
    const client = createClient(createConfig({ baseUrl: env.baseUrl, auth: env.token }));
    const anonymous = createClient(createConfig({ baseUrl: env.baseUrl }));

    const described = await getOpenApiDocument({ client: anonymous });
    check(described.data !== undefined, "GET /openapi.json: the document");
    const { userId, otherUserId } = usersOf<UserId>(described.data, env);
    const user = { user_id: userId };

    // Create, with the body the README shows: a title and no description.
    const tasks: Task[] = [];
    for (const title of ["first", "second", "third", "fourth", "fifth"]) {
        tasks.push(created(title, await createTask({ client, path: user, body: { title } }), env));
    }

    // Pages of two, newest first, each found by following the previous page's Link.
    const query: NonNullable<ListTasksData["query"]> = { sort: "-created_at", limit: 2 };
    const { ids, pages } = await followPages(query, (cursor) =>
        listTasks({ client, path: user, query: { ...query, cursor } }),
    );
    equal(pages, 3, "pages of two for five tasks");
    equal(ids, tasks.map((task) => task.id).reverse(), "the tasks, page by page");

    // If-None-Match: the current ETag is a 304 without a body.
    const task = { user_id: userId, id: tasks[0].id };
    const fetched = await getTask({ client, path: task });
    const etag = fetched.response.headers.get("ETag");
    check(etag !== null, "GET task: an ETag");
    const unchanged = await getTask({ client, path: task, headers: { "If-None-Match": etag } });
    equal(unchanged.response.status, 304, "GET with If-None-Match: the current ETag");
    equal(unchanged.data, undefined, "the 304's body");

    // If-Match: a write with the current ETag succeeds, a second one with it is a 412.
    const renamed = await updateTask({
        client,
        path: task,
        headers: { "If-Match": etag },
        body: { title: "renamed" },
    });
    equal(renamed.response.status, 200, "PUT with If-Match: the current ETag");
    equal(renamed.data?.title, "renamed", "the renamed task's title");
    const stale = await updateTask({
        client,
        path: task,
        headers: { "If-Match": etag },
        body: { is_completed: true },
    });
    equal([stale.response.status, stale.error?.status], [412, 412], "PUT with a stale If-Match");
    const after = await getTask({ client, path: task });
    equal(after.data?.is_completed, false, "what the refused write left");

    // Idempotency-Key: a retry gets the first answer; the same key with another body is a 422.
    const key = `once-${crypto.randomUUID()}`;
    const once = { client, path: user, headers: { "Idempotency-Key": key } };
    const first = await createTask({ ...once, body: { title: "once" } });
    const retry = await createTask({ ...once, body: { title: "once" } });
    equal([first.response.status, retry.response.status], [201, 201], "POST, then its retry");
    check(first.data !== undefined && retry.data !== undefined, "the retried task");
    equal(retry.data, first.data, "the retry's task");
    const reused = await createTask({ ...once, body: { title: "other" } });
    equal(reused.response.status, 422, "the key again with another body");
    check(reused.error !== undefined && "errors" in reused.error, "the reused key's problem");
    equal(reused.error.errors[0].loc, ["header", "Idempotency-Key"], "what the 422 names");
    const named = await listTasks({ client, path: user, query: { q: "once" } });
    equal(named.data?.map((found) => found.id), [first.data.id], "tasks created with the key");

    // The change feed: everything from the start, then a deletion, then nothing.
    const feed = await listTaskChanges({ client, path: user });
    check(feed.data !== undefined, "the feed from the start");
    const expected = [...tasks.map((each) => each.id), first.data.id];
    const fed = feed.data.tasks.map((each) => each.id);
    equal(ascending(fed), ascending(expected), "the feed's tasks");
    equal([feed.data.deleted, feed.data.has_more], [[], false], "the feed's deletions, has_more");
    const gone = { user_id: userId, id: tasks[1].id };
    const deleted = await deleteTask({ client, path: gone });
    equal(deleted.response.status, 204, "DELETE");
    const changes = await listTaskChanges({ client, path: user, query: { since: feed.data.next } });
    check(changes.data !== undefined, "the feed since its last token");
    equal(changes.data.tasks, [], "tasks changed since");
    equal(changes.data.deleted.map((each) => each.id), [gone.id], "tasks deleted since");
    const later = { since: changes.data.next };
    const quiet = await listTaskChanges({ client, path: user, query: later });
    equal([quiet.data?.tasks, quiet.data?.deleted], [[], []], "the feed when nothing changed");

    // Each error model.
    const unauthenticated = await listTasks({ client: anonymous, path: user });
    equal([unauthenticated.response.status, unauthenticated.error?.status], [401, 401], "no token");
    check(unauthenticated.response.headers.has("WWW-Authenticate"), "the 401's challenge");
    const refusing = createClient(createConfig({ baseUrl: env.baseUrl, auth: "not.a.token" }));
    const refused = await listTasks({ client: refusing, path: user });
    equal([refused.response.status, refused.error?.status], [401, 401], "a refused token");
    const forbidden = await listTasks({ client, path: { user_id: otherUserId } });
    equal([forbidden.response.status, forbidden.error?.status], [403, 403], "another user's URL");
    const missing = await getTask({ client, path: gone });
    equal([missing.response.status, missing.error?.status], [404, 404], "a deleted task");
    const invalid = await createTask({ client, path: user, body: { title: "   " } });
    equal(invalid.response.status, 422, "a blank title");
    check(invalid.error !== undefined && "errors" in invalid.error, "a validation problem");
    equal(invalid.error.errors[0].loc, ["body", "title"], "where the problem is");
});
