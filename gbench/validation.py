"""One validator for every settings table: suite tables, variant and metric configs, backbones.

A settings class is a frozen dataclass with typed fields (``typing.Annotated`` with a pydantic
``Field`` adds a range, e.g. ``Annotated[int, Field(gt=0)]``). :func:`build` checks a TOML table
against it with pydantic in strict mode and ``extra="forbid"``: an unknown key, a value of the wrong
type (``"0.5"`` for a number, ``true`` for an integer, ``1.5`` for an integer), an out-of-range or
non-finite number is a :class:`GbenchError` naming where, the key and the problem, in one line. The
class's own ``__post_init__`` checks run afterwards, their ``ValueError`` reported the same way.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from functools import lru_cache
from typing import Any, Mapping

import pydantic
from pydantic import ConfigDict, ValidationError

from gbench.errors import GbenchError


@lru_cache(maxsize=None)
def _model(cls: type, finite: bool) -> type[pydantic.BaseModel]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = pydantic.Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = (hints.get(f.name, Any), default)
    config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=not finite, arbitrary_types_allowed=True)
    return pydantic.create_model(f"{cls.__name__}Settings", __config__=config, **fields)


def _tuples(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """TOML arrays as tuples where the field is a tuple (strict mode takes no list for a tuple)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = dict(raw)
    for key, value in raw.items():
        hint = hints.get(key)
        while typing.get_origin(hint) is typing.Annotated:
            hint = typing.get_args(hint)[0]
        if isinstance(value, list) and typing.get_origin(hint) is tuple:
            out[key] = tuple(value)
    return out


def describe_error(exc: ValidationError) -> str:
    """The first problem of ``exc`` as ``key: message``."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "table"
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}"
    value = err.get("input")
    shown = "" if err["type"] == "missing" else f", got {value!r}"
    message = err["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    return f"{key!r}: {message[0].lower()}{message[1:]}{shown}"


def build(cls: type, raw: Any, where: str, finite: bool = True) -> Any:
    """``cls(**raw)`` after a strict check of ``raw``; any problem is one :class:`GbenchError` line.

    ``finite``: numbers must be finite (suite tables); else infinities are allowed (a variant may
    accept ``alpha = inf``) but NaN never is."""
    if not isinstance(raw, Mapping):
        raise GbenchError(f"{where}: expected a table, got {raw!r}")
    for key, value in raw.items():
        if isinstance(value, float) and math.isnan(value):
            raise GbenchError(f"{where}: {key!r} is nan; give a number")
    model = _model(cls, finite)
    try:
        checked = model.model_validate(_tuples(cls, raw))
    except ValidationError as exc:
        known = ""
        if exc.errors()[0]["type"] == "extra_forbidden":
            known = f" (known: {', '.join(f.name for f in dataclasses.fields(cls) if f.init) or 'none'})"
        raise GbenchError(f"{where}: {describe_error(exc)}{known}") from None
    values = {k: getattr(checked, k) for k in raw}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise GbenchError(f"{where}: {exc}") from None
