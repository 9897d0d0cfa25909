"""The base classes of the API's answer models (see `cellplane.api.models`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["OpenView", "Time", "View"]


def _unstated(schema: dict[str, Any]) -> None:
    # extra="allow" keeps unknown fields at run time; the document does not promise any.
    schema.pop("additionalProperties", None)


class View(BaseModel):
    """An answer's object: validated, never trimmed (see the module's docstring)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_unstated)


class OpenView(BaseModel):
    """An object whose keys are data (a spec, a JWK): any key is allowed, and documented so."""

    model_config = ConfigDict(extra="allow")


Time = str  # an ISO 8601 timestamp with its UTC offset
