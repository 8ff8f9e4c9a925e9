"""CONTRACT §7: /openapi.json describes every route, and real responses match what it says."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from conftest import OneConnectionPool, body, make_token, new_user_id
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from tornado.httpclient import HTTPResponse
from tornado.web import Application

from taskd import openapi, routes
from taskd.changes import FeedToken
from taskd.handlers.base import BaseHandler, public
from taskd.headers import IDEMPOTENCY_KEY
from taskd.models import NO_NUL_PATTERN, TITLE_PATTERN, TaskCreate

DOCUMENT_URI = "urn:taskd:openapi"
TASKS = "/api/{user_id}/tasks"
TASK = "/api/{user_id}/tasks/{id}"
CHANGES = "/api/{user_id}/tasks/changes"
COMPLETE = "/api/{user_id}/tasks/{id}/complete"


@pytest.fixture
def document(app) -> dict[str, Any]:
    """The document the app serves at /openapi.json (built once, by make_app)."""
    described: dict[str, Any] = orjson.loads(app.settings["openapi"])
    return described


def pointer(*parts: str) -> str:
    """A JSON pointer into the document (RFC 6901 escapes)."""
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


class Checker:
    """Holds real responses to the document: status, media type, body schema, headers."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self.checked: set[tuple[str, str, int]] = set()

    def resolve(self, item: dict[str, Any]) -> dict[str, Any]:
        """`item`, or what its `$ref` (a pointer into the document) names."""
        while "$ref" in item:
            found: Any = self.document
            for part in item["$ref"].removeprefix("#/").split("/"):
                found = found[part.replace("~1", "/").replace("~0", "~")]
            item = found
        return item

    def validate(self, value: Any, location: str) -> None:
        schema = {"$ref": f"{DOCUMENT_URI}#{location}"}
        Draft202012Validator(schema, registry=self.registry).validate(value)

    def check(self, method: str, path: str, response: HTTPResponse) -> None:
        operation = self.document["paths"][path][method.lower()]
        status = str(response.code)
        assert status in operation["responses"], f"{method} {path}: {status} is undocumented"
        documented = self.resolve(operation["responses"][status])
        for name, header in documented.get("headers", {}).items():
            header = self.resolve(header)
            if header.get("required"):
                assert name in response.headers, f"{method} {path} {status}: no {name}"
            if name in response.headers:
                value: Any = response.headers[name]
                if header["schema"].get("type") == "integer":
                    value = int(value)
                Draft202012Validator(header["schema"]).validate(value)
        content = documented.get("content", {})
        if not content:
            assert response.body == b"", f"{method} {path} {status}: undocumented body"
        else:
            media_type = response.headers["Content-Type"].split(";")[0]
            assert media_type in content, f"{method} {path} {status}: {media_type}"
            if media_type.endswith("json"):
                ref = operation["responses"][status].get("$ref")
                where = (
                    pointer("components", "responses", ref.rpartition("/")[2])
                    if ref
                    else pointer("paths", path, method.lower(), "responses", status)
                )
                schema = f"{where}/content/{pointer(media_type)[1:]}/schema"
                self.validate(orjson.loads(response.body), schema)
        self.checked.add((method, path, response.code))


@pytest.fixture
def checker(document: dict[str, Any]) -> Checker:
    return Checker(document)


def test_the_document_is_openapi_3_1_and_reads_as_3_0_too(document):
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    # /docs hands Swagger UI 4 the document labelled 3.0.3: it must be true to that label too.
    validate({**document, "openapi": "3.0.3"}, cls=OpenAPIV30SpecValidator)


def route_table(app: Application) -> list[tuple[str, Any]]:
    """The app's real routes: (pattern, handler class)."""
    rules = app.wildcard_router.rules
    return [(rule.matcher.regex.pattern.removesuffix("$"), rule.target) for rule in rules]


def routes_of(app: Application) -> dict[str, set[str]]:
    """Each route's path template, and the methods its handler answers."""
    return {
        routes.template(pattern): set(handler.SUPPORTED_METHODS) - openapi.NOT_OPERATIONS
        for pattern, handler in route_table(app)
    }


def test_every_route_and_method_is_documented_and_nothing_else(app, document):
    documented = {
        path: {method.upper() for method in item} for path, item in document["paths"].items()
    }
    assert documented == routes_of(app)
    expected = {TASKS, CHANGES, TASK, COMPLETE, "/healthz", "/readyz", "/metrics", "/docs"}
    assert set(documented) >= expected


def test_a_route_nobody_described_stops_the_build(app):
    @public
    class Undescribed(BaseHandler):
        pass

    table = [
        (r.matcher.regex.pattern.removesuffix("$"), r.target) for r in app.wildcard_router.rules
    ]
    with pytest.raises(ValueError, match=r"GET /extra is not described"):
        openapi.build([*table, ("/extra", Undescribed)])


def test_api_operations_declare_bearer_auth_and_their_errors(document):
    expected = {
        ("get", TASKS): {"200", "401", "403", "422", "431", "503"},
        ("post", TASKS): {"201", "401", "403", "413", "415", "422", "431", "503"},
        ("get", CHANGES): {"200", "401", "403", "410", "422", "431", "503"},
        ("get", TASK): {"200", "304", "401", "403", "404", "431", "503"},
        ("put", TASK): {"200", "401", "403", "404", "412", "413", "415", "422", "431", "503"},
        ("delete", TASK): {"204", "401", "403", "404", "412", "431", "503"},
        ("patch", COMPLETE): {"200", "401", "403", "404", "412", "413", "415", "422", "431", "503"},
    }
    for (method, path), statuses in expected.items():
        operation = document["paths"][path][method]
        assert set(operation["responses"]) == statuses, (method, path)
        assert operation["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")


def test_list_parameters_carry_their_constraints(document):
    parameters = {p["name"]: p for p in document["paths"][TASKS]["get"]["parameters"]}
    assert parameters["user_id"]["in"] == "path"
    assert parameters["completed"]["schema"] == {"type": "boolean"}
    assert parameters["sort"]["schema"]["enum"] == [
        "created_at",
        "-created_at",
        "updated_at",
        "-updated_at",
        "title",
        "-title",
    ]
    limit = parameters["limit"]["schema"]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 1000)
    assert parameters["cursor"]["schema"] == {"type": "string"}
    assert parameters["q"]["schema"]["maxLength"] == 500


def test_a_created_task_links_to_get_update_delete(document):
    created = document["paths"][TASKS]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True
    operation_ids = {
        item[method]["operationId"] for item in document["paths"].values() for method in item
    }
    for name in ("GetTask", "UpdateTask", "DeleteTask"):
        link = created["links"][name]
        assert link["operationId"] in operation_ids
        assert link["parameters"] == {
            "user_id": "$request.path.user_id",
            "id": "$response.body#/id",
        }


TITLES = [
    "a",
    "  padded  ",
    "x" * 500,
    " \t" + "x" * 500 + "\n ",
    "x" * 501,
    "",
    "   ",
    "\u00a0\u2003",
    "nul\u0000inside",
    "line\nbreak",
    "a" + " " * 498 + "b",
    "a" + " " * 499 + "b",
]


@pytest.mark.parametrize("title", TITLES)
def test_the_title_schema_says_what_the_model_accepts(document, title):
    schema = document["components"]["schemas"]["TaskCreate"]["properties"]["title"]
    assert schema["pattern"] == TITLE_PATTERN
    try:
        TaskCreate.model_validate({"title": title})
        accepted = True
    except ValueError:
        accepted = False
    assert (re.search(TITLE_PATTERN, title) is not None) == accepted


def test_optional_update_fields_may_be_absent_but_never_null(document):
    schema = document["components"]["schemas"]["TaskUpdate"]
    assert schema["minProperties"] == 1
    assert schema["additionalProperties"] is False
    for field in schema["properties"].values():
        assert "anyOf" not in field and "default" not in field
    assert schema["properties"]["description"]["maxLength"] == 5000
    assert schema["properties"]["description"]["pattern"] == NO_NUL_PATTERN


def schemas_in(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema in `node` (an object with a `type`), with its JSON pointer."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield where, node
        for key, value in node.items():
            yield from schemas_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from schemas_in(value, f"{where}/{index}")


def test_fields_a_body_may_leave_out_have_no_default(document, checker):
    # openapi-typescript 7 (its default defaultNonNullable) types a property with a `default` as
    # always present, so `{"title": ...}` would not type-check: the default is told in words.
    bodies = [
        checker.resolve(operation["requestBody"]["content"]["application/json"]["schema"])
        for item in document["paths"].values()
        for operation in item.values()
        if "requestBody" in operation
    ]
    assert len(bodies) == 3
    for schema in bodies:
        assert [where for where, field in schemas_in(schema) if "default" in field] == []
    create = document["components"]["schemas"]["TaskCreate"]
    assert create["required"] == ["title"]
    assert create["properties"]["description"]["description"] == "Absent: the empty string"
    assert TaskCreate.model_validate({"title": "t"}).description == ""


def test_every_object_schema_says_what_it_may_hold(document):
    # A bare {"type": "object"} is the empty object to openapi-typescript (Record<string, never>).
    bare = [
        where
        for where, schema in schemas_in(document)
        if schema["type"] == "object" and not {"properties", "additionalProperties"} & set(schema)
    ]
    assert bare == []
    served = document["paths"]["/openapi.json"]["get"]["responses"]["200"]["content"]
    schema = served["application/json"]["schema"]
    assert schema["required"] == ["openapi", "info", "paths", "components"]
    assert schema["additionalProperties"] is True


def test_sort_values_have_names_a_generated_client_can_use(document):
    # openapi-python-client names `-title` VALUE_5 unless the document names it.
    parameters = {p["name"]: p for p in document["paths"][TASKS]["get"]["parameters"]}
    sort = parameters["sort"]["schema"]
    assert dict(zip(sort["enum"], sort["x-enum-varnames"], strict=True)) == {
        "created_at": "CREATED_AT",
        "-created_at": "CREATED_AT_DESC",
        "updated_at": "UPDATED_AT",
        "-updated_at": "UPDATED_AT_DESC",
        "title": "TITLE",
        "-title": "TITLE_DESC",
    }


async def test_real_api_responses_match_the_document(api, user_id, checker):
    tasks = f"/api/{user_id}/tasks"

    created = await api.request("POST", tasks, user=user_id, json={"title": "first"})
    checker.check("POST", TASKS, created)
    item = f"{tasks}/{body(created)['id']}"
    etag = created.headers["ETag"]
    await api.create(user_id, "second")
    too_old = FeedToken(after=0, after_id=None, at=0).encode()

    wrong_secret = make_token(user_id, secret="wrong-" + "w" * 40)
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("GET", TASKS, tasks + "?limit=1", {}),  # 200 with a Link to the next page
        ("GET", TASKS, tasks + "?completed=false&sort=title&q=fir", {}),
        ("GET", TASK, item, {}),
        ("GET", TASK, item, {"headers": {"If-None-Match": etag}}),  # 304
        ("POST", TASKS, tasks, {"json": {"title": "once"}, "headers": {IDEMPOTENCY_KEY: "k-1"}}),
        ("GET", CHANGES, tasks + "/changes?limit=1", {}),
        ("GET", CHANGES, tasks + "/changes?since=nonsense", {}),  # 422
        ("GET", CHANGES, tasks + f"/changes?since={too_old}", {}),  # 410
        ("PUT", TASK, item, {"json": {"title": "renamed", "is_completed": True}}),
        ("PUT", TASK, item, {"json": {"title": "stale"}, "headers": {"If-Match": etag}}),  # 412
        ("PATCH", COMPLETE, item + "/complete", {}),
        ("PATCH", COMPLETE, item + "/complete", {"json": {"is_completed": False}}),
        ("PATCH", COMPLETE, item + "/complete", {"json": {"is_completed": "no"}}),  # 422
        ("GET", TASKS, tasks, {"user": None}),  # 401: no token
        ("GET", TASKS, tasks, {"token": wrong_secret}),  # 401: refused token
        ("GET", TASKS, f"/api/{new_user_id()}/tasks", {}),  # 403
        ("GET", TASK, f"{tasks}/999999999999", {}),  # 404
        ("PUT", TASK, f"{tasks}/abc", {"json": {"title": "x"}}),  # 404
        ("POST", TASKS, tasks, {"body": b"x" * (64 * 1024 + 1), "headers": JSON_HEADERS}),
        ("POST", TASKS, tasks, {"body": b"title", "headers": {"Content-Type": "text/plain"}}),
        ("POST", TASKS, tasks, {"json": {"title": "   "}}),  # 422
        ("PUT", TASK, item, {"json": {}}),  # 422
        ("GET", TASKS, tasks + "?limit=0", {}),  # 422
        ("DELETE", TASK, item, {}),  # 204
    ]
    for method, template, path, options in calls:
        response = await api.request(method, path, **{"user": user_id, **options})
        checker.check(method, template, response)

    assert {status for _, _, status in checker.checked} == {
        200,
        201,
        204,
        304,
        401,
        403,
        404,
        410,
        412,
        413,
        415,
        422,
    }


JSON_HEADERS = {"Content-Type": "application/json"}


async def test_openapi_json_serves_the_document(api, app):
    response = await api.request("GET", "/openapi.json")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.body == app.settings["openapi"]


async def test_public_responses_match_the_document(api, checker):
    for path, template in [
        ("/healthz", "/healthz"),
        ("/readyz", "/readyz"),
        ("/metrics", "/metrics"),
        ("/openapi.json", "/openapi.json"),
        ("/docs", "/docs"),
        ("/docs/swagger-ui.css", "/docs/{asset}"),
        ("/docs/favicon-32x32.png", "/docs/{asset}"),
    ]:
        checker.check("GET", template, await api.request("GET", path))


class TestBusyDatabase(OneConnectionPool):
    async def test_a_503_matches_the_document(self, api, user_id, pool, checker):
        async with pool.connection():
            response = await api.request("GET", f"/api/{user_id}/tasks", user=user_id)
            ready = await api.request("GET", "/readyz")
        checker.check("GET", TASKS, response)
        checker.check("GET", "/readyz", ready)
        assert {status for _, _, status in checker.checked} == {503}
