"""Typed settings from a Lambda's environment variables: one style for every handler.

Each field's alias is its variable's name; a blank value counts as unset; the settings are parsed
once per invocation (a handful of dict lookups, so tests and the local emulator can change the
environment between calls), and a value that cannot be used is one error naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class SettingsError(ValueError):
    """Environment variables a function cannot work with; the message names each one."""


class EnvironmentSettings(BaseModel):
    """Base class: declare fields with ``Field(alias="VARIABLE_NAME")``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # What the settings are called in messages ("missing launcher settings: ...").
    settings_name: ClassVar[str] = "settings"
    # The exception raised for a missing or invalid variable (a ValueError or RuntimeError subclass).
    error_type: ClassVar[type[Exception]] = SettingsError

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> environment variable name."""
        return {name: field.alias or name for name, field in cls.model_fields.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str | None] | None = None) -> Self:
        source: Mapping[str, str | None] = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for variable in cls.variables().values():
            raw = source.get(variable)
            if raw is not None and raw.strip():
                values[variable] = raw.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise cls.error_type(cls._describe(exc)) from None

    @classmethod
    def _describe(cls, exc: ValidationError) -> str:
        variables = cls.variables()
        missing, invalid = [], []
        for error in exc.errors(include_url=False):
            loc = error.get("loc") or ("?",)
            name = variables.get(str(loc[0]), str(loc[0]))
            if error.get("type") == "missing":
                missing.append(name)
            else:
                invalid.append(f"{name}: {error.get('msg')}")
        parts = []
        if missing:
            parts.append(f"missing {cls.settings_name}: {', '.join(missing)}")
        if invalid:
            parts.append(f"invalid {cls.settings_name}: {'; '.join(invalid)}")
        return "; ".join(parts)

    def as_env(self) -> dict[str, str]:
        """The environment that gives these settings (the stack sets it); unset values left out."""
        out = {}
        for name, variable in self.variables().items():
            value = getattr(self, name)
            if value is not None:
                out[variable] = str(value).lower() if isinstance(value, bool) else str(value)
        return out
