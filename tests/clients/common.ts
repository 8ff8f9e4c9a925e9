// What both TypeScript flows share: their environment, assertions, and reading what taskd says
// (the token's user, the `Link` to the next page) the way any client has to.

/** The live taskd and two users' tokens, from tests/check_clients.sh. */
export interface Environment {
    baseUrl: string;
    token: string;
    otherToken: string;
}

export function environment(): Environment {
    const read = (name: string): string => {
        const value = process.env[name];
        if (!value) throw new Error(`${name} is not set`);
        return value;
    };
    return {
        baseUrl: read("TASKD_URL"),
        token: read("TASKD_TOKEN"),
        otherToken: read("TASKD_OTHER_TOKEN"),
    };
}

export class FlowFailure extends Error {}

export function check(condition: boolean, what: string): asserts condition {
    if (!condition) throw new FlowFailure(what);
}

export function equal<T>(actual: T, expected: T, what: string): void {
    const [a, e] = [JSON.stringify(actual), JSON.stringify(expected)];
    check(a === e, `${what}: expected ${e}, got ${a}`);
}

export function ascending(ids: readonly number[]): number[] {
    return [...ids].sort((a, b) => a - b);
}

/** A JWT's `sub`: the user whose URLs the token may use. */
export function subject(token: string): string {
    const payload: unknown = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
    const sub = field(payload, "sub");
    check(typeof sub === "string", "the token has a string sub");
    return sub;
}

function field(value: unknown, name: string): unknown {
    const found = typeof value === "object" && value !== null && Object.hasOwn(value, name);
    return found ? (value as Record<string, unknown>)[name] : undefined;
}

/** The served document, as a generated client types it. */
export interface Described {
    openapi: string;
    paths: object;
    components: object;
}

/**
 * Checks the served document, and gives the two users' ids the URLs carry: each token's sub, as
 * the type the document gives user ids (`integer` today; a deployment may choose text ids).
 */
export function usersOf<UserId extends number | string>(
    document: Described,
    env: Environment,
): { userId: UserId; otherUserId: UserId } {
    equal(document.openapi, "3.1.0", "the document's OpenAPI version");
    check("/api/{user_id}/tasks" in document.paths, "the document describes the task list");
    let type: unknown = document.components;
    for (const name of ["schemas", "Task", "properties", "user_id", "type"]) {
        type = field(type, name);
    }
    check(type === "integer" || type === "string", `Task.user_id has type ${type}`);
    const id = (token: string) => (type === "integer" ? Number(subject(token)) : subject(token));
    return { userId: id(env.token) as UserId, otherUserId: id(env.otherToken) as UserId };
}

/** The fields of a task the flows read, whichever client typed it. */
interface TaskFields {
    id: number;
    title: string;
    description: string;
    is_completed: boolean;
    user_id: number | string;
}

/** Checks the answer to a POST of `{title}` alone: a 201, its Location, the task with defaults. */
export function created<T extends TaskFields>(
    title: string,
    { data, response }: { data?: T; response: Response },
    env: Environment,
): T {
    equal(response.status, 201, `POST ${title}`);
    check(data !== undefined, `POST ${title}: the task`);
    const user = subject(env.token);
    equal(
        [data.title, data.description, data.is_completed, String(data.user_id)],
        [title, "", false, user],
        "the created task",
    );
    equal(response.headers.get("Location"), `/api/${user}/tasks/${data.id}`, "Location");
    return data;
}

/**
 * Reads a list from its first page to its last, each page the target of the previous page's
 * `Link: <...>; rel="next"`, whose query must repeat `query` (the list's sort and limit).
 */
export async function followPages(
    query: Readonly<Record<string, unknown>>,
    page: (cursor: string | undefined) => Promise<{
        data?: readonly { id: number }[];
        response: Response;
    }>,
): Promise<{ ids: number[]; pages: number }> {
    const ids: number[] = [];
    let pages = 0;
    for (let cursor: string | undefined; pages === 0 || cursor !== undefined; pages++) {
        const { data, response } = await page(cursor);
        check(data !== undefined, `page ${pages + 1}: ${response.status}`);
        ids.push(...data.map((task) => task.id));
        const next = nextPage(response.headers.get("Link"));
        for (const [name, value] of Object.entries(query)) {
            if (next !== undefined) equal(next.get(name), String(value), `the Link's ${name}`);
        }
        cursor = next?.get("cursor") ?? undefined;
    }
    return { ids, pages };
}

/** The query of the `Link: <...>; rel="next"` target, or undefined on the last page. */
function nextPage(link: string | null): URLSearchParams | undefined {
    if (link === null) return undefined;
    const match = /^<([^>]*)>; rel="next"$/.exec(link);
    check(match !== null, `a Link to the next page, got ${link}`);
    return new URL(match[1], "http://taskd.invalid").searchParams;
}

/** Runs a flow and ends the process: status 0 when it passed, 1 with the reason when not. */
export function run(name: string, flow: () => Promise<void>): void {
    flow().then(
        () => console.log(`${name}: OK`),
        (error: unknown) => {
            console.error(`${name}: FAIL: ${error instanceof Error ? error.stack : error}`);
            process.exitCode = 1;
        },
    );
}
