"""Configuration: the only module that reads YAML.

A config file has one section per pipeline stage; each section becomes a frozen dataclass that checks
its values in ``__post_init__``. Unknown keys and wrong types are errors naming the key and the file.
Each stage function receives only its own section (``cfg.data``, ...), never the whole file.

``configs/default.yaml`` documents every key with its default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ConfigError", "DataConfig", "MedalConfig", "load_config", "config_from_dict", "config_to_dict", "config_hash"]


class ConfigError(ValueError):
    """A config file is malformed: unknown key, wrong type or invalid value (the message names both)."""


@dataclass(frozen=True)
class DataConfig:
    """``data:`` how volumes are prepared before they reach a model."""

    normalize: str = "zscore"  # zscore | minmax | none (per volume)
    clip_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self):
        from medal.data.normalize import NORMALIZERS

        if self.normalize not in NORMALIZERS:
            raise ConfigError(f"data.normalize: {self.normalize!r} is not one of {sorted(NORMALIZERS)}")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"data.clip_percentiles: need 0 <= low < high <= 100, got {list(self.clip_percentiles)}")


@dataclass(frozen=True)
class MedalConfig:
    """The whole file: one section per stage."""

    data: DataConfig = field(default_factory=DataConfig)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, where: str):
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args or (typing.Any, typing.Any)
        return {_coerce(k, kt, _key(where, k)): _coerce(v, vt, _key(where, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")  # a bug in medal, not in the file


def _key(where: str, k) -> str:
    return f"{where} {k}" if where.endswith(":") else f"{where}.{k}"


def _build(cls, mapping, where: str):
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where.rstrip(':')}: expected a mapping of keys, got {type(mapping).__name__} {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ConfigError(f"{where.rstrip(':')}: unknown key(s) {unknown}; valid keys: {names}")
    kwargs = {k: _coerce(v, hints[k], _key(where, k)) for k, v in mapping.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        source = where.split(":")[0] if ":" in where else ""
        if source and not str(exc).startswith(source):
            raise ConfigError(f"{source}: {exc}") from None
        raise


def config_from_dict(mapping: dict, *, source: str = "<config>") -> MedalConfig:
    """Build a :class:`MedalConfig` from a plain mapping; ``source`` names it in errors."""
    return _build(MedalConfig, mapping, f"{source}:")


def load_config(path=None) -> MedalConfig:
    """Read a YAML config; ``None`` gives the defaults. Errors name the file and the key."""
    if path is None:
        return MedalConfig()
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return config_from_dict(mapping or {}, source=str(path))


def config_to_dict(cfg) -> dict:
    """Plain JSON-able dict (tuples become lists) for manifests."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_hash(cfg) -> str:
    """Stable SHA-256 of a config section (or the whole config)."""
    return hashlib.sha256(json.dumps(config_to_dict(cfg), sort_keys=True).encode()).hexdigest()
