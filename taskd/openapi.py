"""The OpenAPI document, built at start-up from the route table and the pydantic models.

Paths are the route templates (taskd.routes), methods each handler's SUPPORTED_METHODS, bodies
and responses the models' JSON Schemas, and the common error responses follow from what a
handler class does: an authenticated one answers 401, 403 and 503; a method with a body 413 and
415; a body or query parameters 422; a path naming a task 404; any request 431. What no class
says (summaries, the success response, conditional-request headers and their 304/410/412) is
written here, in OPERATIONS, and a route missing there (or an entry no route has) stops
make_app: the document cannot fall behind the routes.

It is OpenAPI 3.1 written within what 3.0 also reads (no `const`, no type lists, no `examples`),
so that the Swagger UI of /docs can render it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema
from tornado.web import RequestHandler

from taskd import __version__, routes
from taskd.auth import AuthMixin
from taskd.client_stream import MAX_HEADER_BYTES
from taskd.db.tasks import DEFAULT_SORT, SORTS
from taskd.handlers.base import JSON_TYPE, MAX_BODY_BYTES, PROBLEM_TYPE, ApiHandler
from taskd.handlers.docs import ASSETS
from taskd.headers import IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_MAX
from taskd.listing import LIMIT_MAX, Q_MAX
from taskd.logs import REQUEST_ID_HEADER
from taskd.models import (
    NO_NUL_PATTERN,
    DeletedTask,
    Task,
    TaskChanges,
    TaskCompletion,
    TaskCreate,
    TaskUpdate,
)
from taskd.user_ids import INTEGER, MAX_ID, TEXT, TEXT_ID_MAX_LENGTH, TEXT_ID_PATTERN

VERSION = "3.1.0"
SCHEMAS = "#/components/schemas/"
RESPONSES = "#/components/responses/"
PARAMETERS = "#/components/parameters/"
MODELS = (Task, TaskCreate, TaskUpdate, TaskCompletion, TaskChanges, DeletedTask)
# Methods every handler answers that are no operation of the API.
NOT_OPERATIONS = {"OPTIONS", "HEAD"}
ID_SCHEMA = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
# A deployment's user ids (taskd/user_ids.py): its path parameter and Task.user_id say which.
USER_ID_SCHEMAS = {
    INTEGER: ID_SCHEMA,
    TEXT: {
        "type": "string",
        "minLength": 1,
        "maxLength": TEXT_ID_MAX_LENGTH,
        "pattern": TEXT_ID_PATTERN,
    },
}


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    status: int
    description: str
    content: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    body: type[BaseModel] | None = None
    body_required: bool = True
    parameters: Sequence[Mapping[str, Any]] = ()
    links: Mapping[str, Any] = field(default_factory=dict)
    # Answers beyond the success and what the handler's class implies.
    responses: Mapping[int, Any] = field(default_factory=dict)
    errors: Sequence[int] = ()


def _json(model: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    schema = {"$ref": SCHEMAS + model.__name__} if isinstance(model, type) else model
    return {JSON_TYPE: {"schema": schema}}


def _text(*media_types: str) -> dict[str, Any]:
    return {media_type: {"schema": {"type": "string"}} for media_type in media_types}


def _parameter(name: str) -> dict[str, str]:
    return {"$ref": PARAMETERS + name}


STATUS = {"type": "object", "required": ["status"], "additionalProperties": False}
# An object schema says what it may hold: a bare `{"type": "object"}` is the empty object to
# openapi-typescript (`Record<string, never>`), so a client could read nothing from it.
ANY_OBJECT = {"type": "object", "additionalProperties": True}
DOCUMENT_SCHEMA = {
    "type": "object",
    "required": ["openapi", "info", "paths", "components"],
    "properties": {
        "openapi": {"type": "string", "enum": [VERSION]},
        "info": {
            **ANY_OBJECT,
            "required": ["title", "version"],
            "properties": {"title": {"type": "string"}, "version": {"type": "string"}},
        },
        "paths": ANY_OBJECT,
        "components": ANY_OBJECT,
    },
    "additionalProperties": True,
}
ETAG = {"ETag": {"$ref": "#/components/headers/ETag"}}
LIMIT = {
    "name": "limit",
    "in": "query",
    "description": "Tasks per page.",
    "schema": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LIMIT_MAX},
}
LIST_PARAMETERS = (
    {
        "name": "completed",
        "in": "query",
        "description": "Only completed (true) or open (false) tasks.",
        "schema": {"type": "boolean"},
    },
    {
        "name": "q",
        "in": "query",
        "description": "A case-insensitive substring of the title or the description; "
        "`%` and `_` match themselves.",
        "schema": {"type": "string", "maxLength": Q_MAX, "pattern": NO_NUL_PATTERN},
    },
    {
        "name": "sort",
        "in": "query",
        "description": "The order; ties are broken by id.",
        "schema": {
            "type": "string",
            "enum": list(SORTS),
            # Generated clients name enum members after their values, and `-title` has no
            # name of its own (openapi-python-client makes it VALUE_5).
            "x-enum-varnames": [
                sort.removeprefix("-").upper() + ("_DESC" if sort.startswith("-") else "")
                for sort in SORTS
            ],
            "default": DEFAULT_SORT,
        },
    },
    LIMIT,
    {
        "name": "cursor",
        "in": "query",
        "description": "Where the page starts: the opaque value of the previous page's "
        "`Link: rel=next`, with the same sort.",
        "schema": {"type": "string"},
    },
)
# From a created task to what can be done with it next.
CREATED_LINKS = {
    name: {
        "operationId": operation_id,
        "parameters": {"user_id": "$request.path.user_id", "id": "$response.body#/id"},
    }
    for name, operation_id in (
        ("GetTask", "getTask"),
        ("UpdateTask", "updateTask"),
        ("DeleteTask", "deleteTask"),
        ("CompleteTask", "completeTask"),
    )
}
NOT_MODIFIED = {
    "description": "If-None-Match names the current version: no body.",
    "headers": {**ETAG},
}
TASKS = "/api/{user_id}/tasks"
TASK_PATH = TASKS + "/{id}"

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", TASKS): Operation(
        "listTasks",
        "List the user's tasks, a page at a time",
        "tasks",
        200,
        "One page of tasks.",
        _json({"type": "array", "items": {"$ref": SCHEMAS + "Task"}}),
        headers={
            "Link": {
                "description": "Present when more tasks follow: "
                '`<URL of the next page>; rel="next"`.',
                "schema": {"type": "string"},
            }
        },
        parameters=LIST_PARAMETERS,
    ),
    ("POST", TASKS): Operation(
        "createTask",
        "Create a task (once per Idempotency-Key)",
        "tasks",
        201,
        "The task, created (or, for a retried Idempotency-Key, as it was created).",
        _json(Task),
        headers={
            "Location": {
                "description": "The new task's URL, `/api/{user_id}/tasks/{id}`.",
                "required": True,
                "schema": {"type": "string"},
            },
            **ETAG,
        },
        body=TaskCreate,
        parameters=[_parameter("IdempotencyKey")],
        links=CREATED_LINKS,
    ),
    ("GET", TASKS + "/changes"): Operation(
        "listTaskChanges",
        "What changed since a token: tasks written and deleted",
        "tasks",
        200,
        "The changes, and the token to poll with next.",
        _json(TaskChanges),
        parameters=[
            {
                "name": "since",
                "in": "query",
                "description": "The `next` of the previous poll; absent: from the beginning.",
                "schema": {"type": "string"},
            },
            LIMIT,
        ],
        errors=[410],
    ),
    ("GET", TASKS + "/events"): Operation(
        "streamTaskChanges",
        "Live updates: the change feed as Server-Sent Events, pushed as changes commit",
        "tasks",
        200,
        "A `text/event-stream` that stays open. Each event's `data:` is one page of the change "
        "feed (a TaskChanges, on one line) and its `id:` that page's `next` token. The first "
        "event comes at once (the feed from `since`, `Last-Event-ID` or the beginning, as "
        "listTaskChanges answers it, with no deletions when it starts from the beginning); "
        "then one event per page of changes, as they commit. A comment line (`: heartbeat`) "
        "comes after TASKD_EVENT_HEARTBEAT (15) s of silence. The stream ends, between two "
        "events, when the token expires or the server stops: reconnect with a fresh token and "
        "`Last-Event-ID`.",
        # One event's shape (OpenAPI 3.2 calls it itemSchema; on 3.1 tools such as schemathesis
        # read `schema` as the schema of each event). Its data is a TaskChanges as JSON text
        # (contentSchema would say so, but the document must also read as OpenAPI 3.0 for /docs).
        {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "required": ["data", "id"],
                    "properties": {
                        "data": {"type": "string", "description": "A TaskChanges, as JSON text."},
                        "id": {"type": "string"},
                        "event": {"type": "string", "enum": ["message"]},
                        "retry": {"type": "integer"},
                    },
                }
            }
        },
        parameters=[
            {
                "name": "since",
                "in": "query",
                "description": "Start after this token (a `next` or an event id); absent: from "
                "the beginning. `Last-Event-ID` wins when both are sent.",
                "schema": {"type": "string"},
            },
            _parameter("LastEventId"),
            LIMIT,
        ],
        errors=[410, 429],
    ),
    ("GET", TASK_PATH): Operation(
        "getTask",
        "Get a task",
        "tasks",
        200,
        "The task.",
        _json(Task),
        headers=ETAG,
        parameters=[_parameter("IfNoneMatch")],
        responses={304: NOT_MODIFIED},
    ),
    ("PUT", TASK_PATH): Operation(
        "updateTask",
        "Change some of a task's fields",
        "tasks",
        200,
        "The task, changed.",
        _json(Task),
        headers=ETAG,
        body=TaskUpdate,
        parameters=[_parameter("IfMatch")],
        errors=[412],
    ),
    ("DELETE", TASK_PATH): Operation(
        "deleteTask",
        "Delete a task",
        "tasks",
        204,
        "Deleted; no body.",
        parameters=[_parameter("IfMatch")],
        errors=[412],
    ),
    ("PATCH", TASK_PATH + "/complete"): Operation(
        "completeTask",
        "Toggle is_completed; or, with a body, set it (a retry cannot flip twice)",
        "tasks",
        200,
        "The task, completed or reopened.",
        _json(Task),
        headers=ETAG,
        body=TaskCompletion,
        body_required=False,
        parameters=[_parameter("IfMatch")],
        errors=[412],
    ),
    ("GET", "/healthz"): Operation(
        "checkHealth",
        "Liveness: the process answers",
        "operations",
        200,
        "Alive.",
        _json({**STATUS, "properties": {"status": {"type": "string", "enum": ["ok"]}}}),
    ),
    ("GET", "/readyz"): Operation(
        "checkReadiness",
        "Readiness: the database answers and no migration is pending",
        "operations",
        200,
        "Ready to serve.",
        _json({**STATUS, "properties": {"status": {"type": "string", "enum": ["ready"]}}}),
        errors=[503],
    ),
    ("GET", "/metrics"): Operation(
        "getMetrics",
        "Prometheus metrics of all workers",
        "operations",
        200,
        "The Prometheus text exposition format, version 0.0.4.",
        _text("text/plain"),
    ),
    ("GET", "/openapi.json"): Operation(
        "getOpenApiDocument",
        "This document",
        "documentation",
        200,
        "The OpenAPI document.",
        _json(DOCUMENT_SCHEMA),
    ),
    ("GET", "/docs"): Operation(
        "getDocs", "This document, rendered", "documentation", 200, "Swagger UI", _text("text/html")
    ),
    ("GET", "/docs/{asset}"): Operation(
        "getDocsAsset",
        "A file of the rendered documentation",
        "documentation",
        200,
        "The file.",
        {
            **_text("text/css", "text/javascript"),
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
        errors=(404,),
    ),
}

PATH_PARAMETERS = {
    "user_id": {
        "description": "The user whose tasks these are: the token's `sub`. "
        "Any other value, a number or not, is a 403.",
        "schema": ID_SCHEMA,
    },
    "id": {
        "description": "A task id. One that names no task of this user, "
        "or that is no positive 64-bit integer, is a 404.",
        "schema": ID_SCHEMA,
    },
    "asset": {
        "description": "One of the files /docs loads.",
        "schema": {"type": "string", "enum": list(ASSETS)},
    },
}
HEADER_PARAMETERS = {
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "description": "Write only if the task's current version is one of these ETags "
        "(strong comparison; `*`: any version). Otherwise 412, and nothing changes.",
        "schema": {"type": "string"},
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "304 without a body if the task's current version is one of these ETags "
        "(weak comparison; `*`: any version).",
        "schema": {"type": "string"},
    },
    "LastEventId": {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "The id of the last event received: the stream resumes right after it, "
        "with no change missed or repeated.",
        "schema": {"type": "string"},
    },
    "IdempotencyKey": {
        "name": IDEMPOTENCY_KEY,
        "in": "header",
        "description": "A retry with the same key and body, within 24 hours, gets the first "
        "answer again instead of creating a second task; the same key with another body is a "
        "422.",
        "schema": {"type": "string", "pattern": f"^[\\x21-\\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$"},
    },
}

# The problem responses, by status: (component name, what it means, its schema).
ERRORS = {
    401: (
        "Unauthorized",
        "No token, or one that fails verification (`WWW-Authenticate` says why).",
        "Problem",
    ),
    403: ("Forbidden", "The URL's user is not the token's user.", "Problem"),
    404: ("NotFound", "No such task for this user.", "Problem"),
    410: (
        "Gone",
        "The change-feed token is older than the 30 days deletions are kept: "
        "start again without `since`.",
        "Problem",
    ),
    412: ("PreconditionFailed", "If-Match names no current version of the task.", "Problem"),
    413: ("PayloadTooLarge", f"The body is over {MAX_BODY_BYTES} bytes.", "Problem"),
    415: ("UnsupportedMediaType", "The body is not application/json.", "Problem"),
    429: (
        "TooManyRequests",
        "As many event streams are open as the server allows, for this user or in all.",
        "Problem",
    ),
    431: (
        "RequestHeaderFieldsTooLarge",
        f"The request's header fields total more than {MAX_HEADER_BYTES // 1024} KiB "
        "(answered before any route; the connection is then closed).",
        "Problem",
    ),
    422: (
        "UnprocessableEntity",
        "A bad body, query parameter or header; `errors` says which.",
        "ValidationProblem",
    ),
    503: (
        "ServiceUnavailable",
        "The database or the JWKS did not answer in time (for /readyz: not ready).",
        "Problem",
    ),
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The Bearer challenge, with `error="invalid_token"` when a token '
            "was sent but refused.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
    503: {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
}


class _BodySchema(GenerateJsonSchema):
    """taskd's bodies never take null (TaskUpdate refuses it): an optional field may be absent,
    so its schema is the field's type alone, without `null` and without a `default`.

    What the server assumes for an absent field is said in the field's description instead:
    openapi-typescript (7, with its default `defaultNonNullable`) types a property that has a
    `default` as always present, so a client could not leave it out."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        json_schema.pop("default", None)
        return json_schema


def _model_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in MODELS],
        ref_template=SCHEMAS + "{model}",
        schema_generator=_BodySchema,
    )
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _headers(**headers: Any) -> dict[str, Any]:
    return {REQUEST_ID_HEADER: {"$ref": "#/components/headers/RequestId"}, **headers}


def _problem_schemas() -> dict[str, Any]:
    properties = {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
    }
    required = ["type", "title", "status", "detail"]
    error = {
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {
                "type": "array",
                "minItems": 1,
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": 'Where: `["body", "title"]`, `["query", "limit"]`...',
            },
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
        "additionalProperties": False,
    }
    return {
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem.",
            "required": required,
            "properties": properties,
            "additionalProperties": False,
        },
        "ValidationProblem": {
            "type": "object",
            "description": "An RFC 9457 problem that names each bad input.",
            "required": [*required, "errors"],
            "properties": {
                **properties,
                "errors": {"type": "array", "minItems": 1, "items": error},
            },
            "additionalProperties": False,
        },
    }


def _components(user_ids: str) -> dict[str, Any]:
    responses = {
        name: {
            "description": description,
            "headers": _headers(**ERROR_HEADERS.get(status, {})),
            "content": {PROBLEM_TYPE: {"schema": {"$ref": SCHEMAS + schema}}},
        }
        for status, (name, description, schema) in ERRORS.items()
    }
    schemas = _model_schemas()
    schemas["Task"]["properties"]["user_id"] = USER_ID_SCHEMAS[user_ids]
    return {
        "schemas": {**schemas, **_problem_schemas()},
        "responses": responses,
        "parameters": HEADER_PARAMETERS,
        "headers": {
            "RequestId": {
                "description": f"The request's id in the access log: the `{REQUEST_ID_HEADER}` "
                "the client sent (1-128 of `A-Za-z0-9._:-`), else a new one.",
                "required": True,
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
            },
            "RetryAfter": {
                "description": "Seconds to wait before retrying.",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            },
            "ETag": {
                "description": "The task's version (strong), for If-Match and If-None-Match.",
                "required": True,
                "schema": {"type": "string", "pattern": '^"[\\x21\\x23-\\x7e]*"$'},
            },
        },
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A Better Auth JWT whose `sub` is the user id.",
            }
        },
    }


def _error_statuses(
    operation: Operation, handler: type[RequestHandler], method: str, path: str
) -> list[int]:
    """What the handler's class, the method and the path make this operation answer."""
    authenticated = issubclass(handler, AuthMixin)
    # Any request can bring too many header bytes (taskd/client_stream.py).
    statuses = {*operation.errors, 431}
    if authenticated:
        statuses |= {401, 403, 503}
    if "{id}" in path:
        statuses.add(404)
    if issubclass(handler, ApiHandler) and method in ApiHandler.BODY_METHODS:
        statuses |= {413, 415}
    if operation.body is not None or any(p.get("in") == "query" for p in operation.parameters):
        statuses.add(422)
    return sorted(statuses)


def _operation(
    operation: Operation,
    handler: type[RequestHandler],
    method: str,
    path: str,
    path_parameters: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": operation.description,
        "headers": _headers(**operation.headers),
    }
    if operation.content:
        success["content"] = operation.content
    if operation.links:
        success["links"] = operation.links
    responses: dict[str, Any] = {str(operation.status): success}
    for status, response in operation.responses.items():
        responses[str(status)] = {**response, "headers": _headers(**response["headers"])}
    for status in _error_statuses(operation, handler, method, path):
        responses[str(status)] = {"$ref": RESPONSES + ERRORS[status][0]}
    parameters = [
        {"name": name, "in": "path", "required": True, **path_parameters[name]}
        for name in routes.parameters(path)
    ]
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": [{"bearerAuth": []}] if issubclass(handler, AuthMixin) else [],
        "parameters": [*parameters, *operation.parameters],
        "responses": dict(sorted(responses.items())),
    }
    if operation.body is not None:
        described["requestBody"] = {
            "required": operation.body_required,
            "content": _json(operation.body),
        }
    return described


def build(
    route_table: Sequence[tuple[str, type[RequestHandler]]], *, user_ids: str = INTEGER
) -> dict[str, Any]:
    """The document of a deployment whose user ids are of the kind `user_ids`."""
    path_parameters = {
        **PATH_PARAMETERS,
        "user_id": {**PATH_PARAMETERS["user_id"], "schema": USER_ID_SCHEMAS[user_ids]},
    }
    paths: dict[str, dict[str, Any]] = {}
    for pattern, handler in route_table:
        path = routes.template(pattern)
        for method in handler.SUPPORTED_METHODS:
            if method in NOT_OPERATIONS:
                continue
            operation = OPERATIONS.get((method, path))
            if operation is None:
                raise ValueError(f"{method} {path} is not described in taskd.openapi.OPERATIONS")
            paths.setdefault(path, {})[method.lower()] = _operation(
                operation, handler, method, path, path_parameters
            )
    described = {(method.upper(), path) for path, item in paths.items() for method in item}
    if stale := set(OPERATIONS) - described:
        raise ValueError(f"taskd.openapi.OPERATIONS describes routes that do not exist: {stale}")
    return {
        "openapi": VERSION,
        "info": {
            "title": "taskd",
            "version": __version__,
            "description": "A per-user task service. Every `/api` request carries "
            "`Authorization: Bearer <JWT>`; a user only ever sees their own tasks. Errors "
            "are RFC 9457 `application/problem+json`. OPTIONS answers CORS preflight, and a "
            "method a path does not have is a 405 with `Allow`.",
        },
        "tags": [
            {"name": "tasks", "description": "A user's tasks (bearer token required)."},
            {"name": "operations", "description": "Health and metrics (public)."},
            {"name": "documentation", "description": "This document (public)."},
        ],
        "paths": paths,
        "components": _components(user_ids),
    }
