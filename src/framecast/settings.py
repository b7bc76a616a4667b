"""Typed settings shared by every framecast service, and the loader that reads them.

Each service defines one pydantic-settings class. `load_settings` reads, in
order of precedence, CLI flags, `FRAMECAST_*` environment variables and the
defaults in the class. Every field gets a flag derived from its name
(`redis_url` -> `--redis-url`). A bad value ends the process with exit code 2
and a message naming both the environment variable and the flag.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from framecast import constants as C
from framecast.logs import redact_text

ENV_PREFIX = "FRAMECAST_"


class CommonSettings(BaseSettings):
    """Settings every service shares: where the bus is and how to log."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    redis_url: str = Field(C.DEFAULT_REDIS_URL,
                           description="Redis/Valkey URL: one server (redis://, rediss://, unix://), a cluster "
                                       "(redis+cluster://h1:p1,h2:p2) or Sentinel "
                                       "(redis+sentinel://s1:p1,s2:p2/master)")
    key_prefix: str = Field(C.DEFAULT_KEY_PREFIX, description="prefix of every Redis key")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["text", "json"] = Field("text", description="log line format")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        from framecast.bus import parse_redis_url  # imports redis-py: only when a service loads its settings

        parse_redis_url(value)  # ValueError says what is wrong
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or len(value) > 64 or any(c.isspace() or c in "{}" for c in value):
            raise ValueError("must be 1-64 characters without spaces or braces")
        return value


S = TypeVar("S", bound=BaseSettings)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return any(a is bool for a in get_args(annotation))
    return False


def build_parser(cls: type[BaseSettings], prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per settings field; defaults come from env/class."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog=f"Every flag can also be set as an environment variable {ENV_PREFIX}NAME.")
    for name, info in cls.model_fields.items():
        helptext = f"{info.description or name} (env {env_name(name)}; default {info.default!r})"
        if _is_bool(info.annotation):
            parser.add_argument(flag_name(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=helptext)
        else:
            parser.add_argument(flag_name(name), dest=name, default=None, help=helptext,
                                choices=list(get_args(info.annotation)) if get_origin(info.annotation) is Literal
                                else None)
    return parser


def settings_error(cls: type[BaseSettings], exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        where = f"{env_name(field)} ({flag_name(field)})" if field in cls.model_fields else field
        # the value is echoed redacted: a bad URL may carry a password
        lines.append(f"invalid setting {where}: {err['msg']} (got {redact_text(repr(err.get('input')))})")
    return "\n".join(lines)


def load_settings(cls: type[S], argv: list[str] | None = None, *, prog: str = "framecast",
                  description: str = "") -> S:
    """Parse flags over the environment; on a bad value print why and exit 2."""
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)  # argparse itself exits 2 on unknown flags
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return cls(**overrides)
    except ValidationError as exc:
        print(f"{prog}: {settings_error(cls, exc)}", file=sys.stderr)
        raise SystemExit(C.EXIT_BAD_SETTING) from None
