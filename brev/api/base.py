"""What every body of the API shares: the base model, names, counts and the error body."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

API_PREFIX = "/api/v1"

# Names appear in URLs, SSH host aliases and cloud tags, so they stay DNS-label shaped.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_RULE = (
    "lowercase letters, digits and '-', 1 to 63 characters, "
    "starting and ending with a letter or digit"
)


def check_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise PydanticCustomError(
            "name", "invalid name {value}: use {rule}", {"value": repr(value), "rule": NAME_RULE}
        )
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    Field(description=NAME_RULE, json_schema_extra={"pattern": NAME_PATTERN}),
]


def _whole_as_int(value: int | float) -> int | float:
    return int(value) if float(value).is_integer() else value


# A count that is whole prints as 8, not 8.0; some clouds sell fractions of a GPU.
Count = Annotated[int | float, AfterValidator(_whole_as_int)]


class _Model(BaseModel):
    # Finite numbers only: PostgreSQL's JSON refuses NaN and Infinity (a 500 there, stored on
    # SQLite), and no price, count or reading is infinite.
    model_config = ConfigDict(from_attributes=True, allow_inf_nan=False)


class FieldError(_Model):
    field: str
    reason: str


class ErrorDetail(_Model):
    code: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class ErrorBody(_Model):
    """Every 4xx and 5xx response carries this body."""

    error: ErrorDetail


class ServerHealth(_Model):
    status: str
    version: str
    database: str
