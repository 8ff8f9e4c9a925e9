// The flow with openapi-typescript 7's types (its default options) and openapi-fetch, against a
// live taskd: every path, parameter, body and answer typed by the served /openapi.json.
import createClient from "openapi-fetch";

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
import type { components, paths } from "./generated/openapi-typescript.js";

type Task = components["schemas"]["Task"];
type ListQuery = NonNullable<paths["/api/{user_id}/tasks"]["get"]["parameters"]["query"]>;
type UserId = paths["/api/{user_id}/tasks"]["get"]["parameters"]["path"]["user_id"];

run("openapi-fetch", async () => {
    const env = environment();
    const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
    const api = createClient<paths>({ baseUrl: env.baseUrl, headers: bearer(env.token) });
    const anonymous = createClient<paths>({ baseUrl: env.baseUrl });

    const described = await anonymous.GET("/openapi.json");
    check(described.data !== undefined, "GET /openapi.json: the document");
    const { userId, otherUserId } = usersOf<UserId>(described.data, env);
    const user = { user_id: userId };

    // Create, with the body the README shows: a title and no description.
    const tasks: Task[] = [];
    for (const title of ["first", "second", "third", "fourth", "fifth"]) {
        const body = { title };
        const answer = await api.POST("/api/{user_id}/tasks", { params: { path: user }, body });
        tasks.push(created(title, answer, env));
    }

    // Pages of two, newest first, each found by following the previous page's Link.
    const query: ListQuery = { sort: "-created_at", limit: 2 };
    const { ids, pages } = await followPages(query, (cursor) =>
        api.GET("/api/{user_id}/tasks", {
            params: { path: user, query: { ...query, cursor } },
        }),
    );
    equal(pages, 3, "pages of two for five tasks");
    equal(ids, tasks.map((task) => task.id).reverse(), "the tasks, page by page");

    // If-None-Match: the current ETag is a 304 without a body.
    const task = { user_id: userId, id: tasks[0].id };
    const fetched = await api.GET("/api/{user_id}/tasks/{id}", { params: { path: task } });
    const etag = fetched.response.headers.get("ETag");
    check(etag !== null, "GET task: an ETag");
    const unchanged = await api.GET("/api/{user_id}/tasks/{id}", {
        params: { path: task, header: { "If-None-Match": etag } },
    });
    equal(unchanged.response.status, 304, "GET with If-None-Match: the current ETag");
    equal(unchanged.data, undefined, "the 304's body");

    // If-Match: a write with the current ETag succeeds, a second one with it is a 412.
    const renamed = await api.PUT("/api/{user_id}/tasks/{id}", {
        params: { path: task, header: { "If-Match": etag } },
        body: { title: "renamed" },
    });
    equal(renamed.response.status, 200, "PUT with If-Match: the current ETag");
    equal(renamed.data?.title, "renamed", "the renamed task's title");
    const stale = await api.PUT("/api/{user_id}/tasks/{id}", {
        params: { path: task, header: { "If-Match": etag } },
        body: { is_completed: true },
    });
    equal([stale.response.status, stale.error?.status], [412, 412], "PUT with a stale If-Match");
    const after = await api.GET("/api/{user_id}/tasks/{id}", { params: { path: task } });
    equal(after.data?.is_completed, false, "what the refused write left");

    // Idempotency-Key: a retry gets the first answer; the same key with another body is a 422.
    const once = { path: user, header: { "Idempotency-Key": `once-${crypto.randomUUID()}` } };
    const first = await api.POST("/api/{user_id}/tasks", { params: once, body: { title: "once" } });
    const retry = await api.POST("/api/{user_id}/tasks", { params: once, body: { title: "once" } });
    equal([first.response.status, retry.response.status], [201, 201], "POST, then its retry");
    check(first.data !== undefined && retry.data !== undefined, "the retried task");
    equal(retry.data, first.data, "the retry's task");
    const other = { title: "other" };
    const reused = await api.POST("/api/{user_id}/tasks", { params: once, body: other });
    equal(reused.response.status, 422, "the key again with another body");
    check(reused.error !== undefined && "errors" in reused.error, "the reused key's problem");
    equal(reused.error.errors[0].loc, ["header", "Idempotency-Key"], "what the 422 names");
    const byTitle = { path: user, query: { q: "once" } };
    const named = await api.GET("/api/{user_id}/tasks", { params: byTitle });
    equal(named.data?.map((found) => found.id), [first.data.id], "tasks created with the key");

    // The change feed: everything from the start, then a deletion, then nothing.
    const feed = await api.GET("/api/{user_id}/tasks/changes", { params: { path: user } });
    check(feed.data !== undefined, "the feed from the start");
    const expected = [...tasks.map((each) => each.id), first.data.id];
    const fed = feed.data.tasks.map((each) => each.id);
    equal(ascending(fed), ascending(expected), "the feed's tasks");
    equal([feed.data.deleted, feed.data.has_more], [[], false], "the feed's deletions, has_more");
    const gone = { user_id: userId, id: tasks[1].id };
    const deleted = await api.DELETE("/api/{user_id}/tasks/{id}", { params: { path: gone } });
    equal(deleted.response.status, 204, "DELETE");
    const since = { path: user, query: { since: feed.data.next } };
    const changes = await api.GET("/api/{user_id}/tasks/changes", { params: since });
    check(changes.data !== undefined, "the feed since its last token");
    equal(changes.data.tasks, [], "tasks changed since");
    equal(changes.data.deleted.map((each) => each.id), [gone.id], "tasks deleted since");
    const later = { path: user, query: { since: changes.data.next } };
    const quiet = await api.GET("/api/{user_id}/tasks/changes", { params: later });
    equal([quiet.data?.tasks, quiet.data?.deleted], [[], []], "the feed when nothing changed");

    // Each error model.
    const unauthenticated = await anonymous.GET("/api/{user_id}/tasks", { params: { path: user } });
    equal([unauthenticated.response.status, unauthenticated.error?.status], [401, 401], "no token");
    check(unauthenticated.response.headers.has("WWW-Authenticate"), "the 401's challenge");
    const refused = await createClient<paths>({
        baseUrl: env.baseUrl,
        headers: bearer("not.a.token"),
    }).GET("/api/{user_id}/tasks", { params: { path: user } });
    equal([refused.response.status, refused.error?.status], [401, 401], "a refused token");
    const forbidden = await api.GET("/api/{user_id}/tasks", {
        params: { path: { user_id: otherUserId } },
    });
    equal([forbidden.response.status, forbidden.error?.status], [403, 403], "another user's URL");
    const missing = await api.GET("/api/{user_id}/tasks/{id}", { params: { path: gone } });
    equal([missing.response.status, missing.error?.status], [404, 404], "a deleted task");
    const invalid = await api.POST("/api/{user_id}/tasks", {
        params: { path: user },
        body: { title: "   " },
    });
    equal(invalid.response.status, 422, "a blank title");
    check(invalid.error !== undefined && "errors" in invalid.error, "a validation problem");
    equal(invalid.error.errors[0].loc, ["body", "title"], "where the problem is");
});
