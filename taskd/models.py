"""Request bodies, validated once at the edge (strict types, no unknown fields)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from taskd.errors import ApiError
from taskd.user_ids import MAX_ID

ModelT = TypeVar("ModelT", bound=BaseModel)

TITLE_MAX = 500
DESCRIPTION_MAX = 5000
# JSON Schema patterns for what `storable` and `_title` enforce (checked against them in tests).
NO_NUL_PATTERN = r"^[^\u0000]*$"
TIMESTAMP_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"
TITLE_PATTERN = rf"^\s*[^\s\u0000](?:[^\u0000]{{0,{TITLE_MAX - 2}}}[^\s\u0000])?\s*$"


def storable(value: str) -> str:
    """Refuse what PostgreSQL cannot store in text: NUL and unpaired surrogates."""
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "Text must not contain the NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise PydanticCustomError("invalid_unicode", "Text must be valid Unicode") from None
    return value


def _title(value: str) -> str:
    value = storable(value).strip()
    if not value:
        raise PydanticCustomError("string_too_short", "Title must not be empty or blank")
    if len(value) > TITLE_MAX:
        raise PydanticCustomError(
            "string_too_long", "Title must be at most {max} characters", {"max": TITLE_MAX}
        )
    return value


Title = Annotated[
    str,
    AfterValidator(_title),
    WithJsonSchema({"type": "string", "minLength": 1, "pattern": TITLE_PATTERN}),
]
Description = Annotated[
    str, AfterValidator(storable), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TaskCreate(_Body):
    title: Title = Field(description="1-500 characters after stripping surrounding whitespace")
    description: Description = Field(
        default="", max_length=DESCRIPTION_MAX, description="Absent: the empty string"
    )

    def fingerprint(self) -> bytes:
        """A digest of the validated body, so two bodies that ask for the same task (the title
        spaced differently, the default description spelt out) count as the same request."""
        return hashlib.sha256(self.model_dump_json().encode()).digest()


class TaskUpdate(_Body):
    """A partial update: only the fields present change; at least one must be present."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    title: Title | None = Field(default=None, description="1-500 characters after stripping")
    description: Description | None = Field(default=None, max_length=DESCRIPTION_MAX)
    is_completed: StrictBool | None = None

    @field_validator("title", "description", "is_completed", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Absent means "leave as it is"; an explicit null is a client mistake.
        if value is None:
            raise PydanticCustomError("null_not_allowed", "Input should not be null")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> TaskUpdate:
        if not self.model_fields_set:
            raise PydanticCustomError(
                "missing", "At least one of title, description, is_completed is required"
            )
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class TaskCompletion(_Body):
    """The body of PATCH .../complete: sets is_completed, where no body toggles it."""

    is_completed: StrictBool


_ID = Field(ge=1, le=MAX_ID, json_schema_extra={"format": "int64"})
_TIMESTAMP = Field(
    description="RFC 3339 UTC with microseconds: 2026-02-05T10:11:12.123456Z",
    json_schema_extra={"format": "date-time", "pattern": TIMESTAMP_PATTERN},
)


class Task(BaseModel):
    """The response shape (documentation only: PostgreSQL renders the JSON itself)."""

    model_config = ConfigDict(extra="forbid")

    id: int = _ID
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    description: str = Field(max_length=DESCRIPTION_MAX)
    is_completed: bool
    created_at: str = _TIMESTAMP
    updated_at: str = Field(
        description="Moves forward on every change; never before created_at",
        json_schema_extra={"format": "date-time", "pattern": TIMESTAMP_PATTERN},
    )
    user_id: int = _ID


class DeletedTask(BaseModel):
    """A deletion in the change feed (documentation only, like Task)."""

    model_config = ConfigDict(extra="forbid")

    id: int = _ID
    deleted_at: str = _TIMESTAMP


class TaskChanges(BaseModel):
    """A page of the change feed (documentation only: taskd.changes renders it)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[Task] = Field(description="Tasks created or changed: their current state")
    deleted: list[DeletedTask]
    next: str = Field(description="The token to send as `since` on the next poll")
    has_more: bool = Field(description="True: poll again at once with `next`")


def parse_body(model: type[ModelT], body: bytes) -> ModelT:
    """Decode a JSON object and validate it, turning every failure into a 422 problem."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(
            422,
            f"The body is not valid JSON: {error}",
            errors=[{"loc": ["body"], "msg": "Invalid JSON", "type": "json_invalid"}],
        ) from None
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "The body must be a JSON object.",
            errors=[{"loc": ["body"], "msg": "Input should be an object", "type": "dict_type"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as error:
        errors = [
            {"loc": ["body", *item["loc"]], "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(422, f"Invalid {where}: {first['msg']}", errors=errors) from None
