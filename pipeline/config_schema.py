"""Turn a plain mapping (parsed YAML) into nested frozen dataclasses, checking keys and types.

Each dataclass may define `validate(self, at: str)` for range checks; `at` is the dotted key of
the section (e.g. "supcon.optimizer"), so errors can name the exact key the user wrote. Every
rule for a key lives in its dataclass in pipeline/config.py; library code that receives a value
from elsewhere (a prepared store, a test) checks it with the same rule, not a looser one.

Why not pydantic v2 (installed through mlflow)? Tried against these dataclasses (2.14):
- It reports every error at once, on several lines each, with a link; ours is one line naming
  the first bad dotted key, its value and what is allowed. Reformatting its errors is possible,
  but an unknown key's message does not list the known ones, and a union's error is reported
  once per member (`key.float`, `key.none`), so the message code would stay as long as this.
- Its lax mode coerces: "0.5" (a YAML string) becomes a float and 1 becomes True. A typo in
  params.yaml must be an error, not a silently different experiment. Strict validation of a
  whole section refuses the plain mapping itself (it wants dataclass instances), so strictness
  would have to be declared field by field.
- The range checks (`validate`) stay hand-written either way, and a direct dependency on a
  library we only get transitively would need its own pin.
"""

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pipeline.errors import ConfigError

T = TypeVar("T")


def build_section(cls: type[T], raw: Any, at: str) -> T:
    """Build dataclass `cls` from mapping `raw`; unknown keys and wrong types raise ConfigError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(at, raw, f"a mapping with keys {_field_names(cls)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_join(at, str(key)), raw[key], f"a known key of {at or 'params'}: {_field_names(cls)}")
    hints = typing.get_type_hints(cls)
    values = {name: _convert(hints[name], raw[name], _join(at, name)) for name in fields if name in raw}
    section = cls(**values)
    if hasattr(section, "validate"):
        section.validate(at)
    return section


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against type `hint`, converting nested sections and lists."""
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build_section(hint, value, key)
    if origin in (Union, types.UnionType):
        return _convert_union(hint, value, key)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(key, value, "one of " + ", ".join(repr(a) for a in get_args(hint)))
        return value
    if origin in (list, tuple):
        return _convert_sequence(hint, value, key)
    return _convert_scalar(hint, value, key)


def _convert_union(hint: Any, value: Any, key: str) -> Any:
    args = get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(key, value, _describe(hint))
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, key)
        except ConfigError:
            continue
    raise ConfigError(key, value, _describe(hint))


def _convert_sequence(hint: Any, value: Any, key: str) -> Any:
    if not isinstance(value, list | tuple):
        raise ConfigError(key, value, _describe(hint))
    (item_hint, *_) = get_args(hint)
    items = [_convert(item_hint, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items)


def _convert_scalar(hint: Any, value: Any, key: str) -> Any:
    # YAML writes 1 for 1.0; accept ints where floats are expected, never bools as numbers.
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # PyYAML reads 1.0e6 (no sign after e) as a string; accept it where a number is expected.
    if hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and hint in (int, float):
        raise ConfigError(key, value, _describe(hint))
    if not isinstance(value, hint):
        raise ConfigError(key, value, _describe(hint))
    return value


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if origin in (list, tuple):
        return f"a list of {_describe(get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return f"a mapping with keys {_field_names(hint)}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    """Raise ConfigError for `key` unless `ok`."""
    if not ok:
        raise ConfigError(key, value, allowed)


def as_dict(section: Any) -> dict:
    """The section as plain nested dicts/lists (for logging and checkpoints)."""
    return _plain(dataclasses.asdict(section))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def flatten(mapping: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become their string form (MLflow params are flat)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
