"""Where notices go: webhook targets from ``evallib.toml``, the environment or ``--notify``.

A webhook URL is a secret (whoever holds it can post to the channel): it lives in a
`Target` whose repr hides it, and every message this package prints, logs or stores names
the target (its ``name`` in evallib.toml, else ``url-`` and 12 hex digits of the URL's
SHA-256, which tell two webhooks apart and cannot be turned back into the URL).

``evallib.toml`` (the current directory's, or the file ``$EVALLIB_CONFIG`` names)::

    [notify]
    dashboard_url = "https://evals.example.com"   # $EVALLIB_DASHBOARD_URL wins
    attempts = 4               # requests per notice before giving up (429 and 5xx retried)
    backoff_seconds = 1.0      # first wait; doubles each retry; Retry-After is honoured
    timeout_seconds = 10.0

    [[notify.targets]]
    name = "eval-alerts"
    format = "slack"           # slack | json
    url_env = "SLACK_EVAL_WEBHOOK"   # the URL, from this environment variable (or url = "…")
    events = ["alerts", "gate"]      # default: both

``$EVALLIB_WEBHOOKS`` adds webhooks separated by spaces, each ``[slack:|json:]URL``.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import EvallibError

__all__ = ["EVENTS", "FORMATS", "Settings", "Target", "load_settings", "resolve_targets"]

FORMATS = ("slack", "json")
EVENTS = ("alerts", "gate")
CONFIG_FILE = "evallib.toml"
_TARGET_KEYS = {"name", "format", "url", "url_env", "events"}
_NOTIFY_KEYS = {"dashboard_url", "attempts", "backoff_seconds", "timeout_seconds", "targets"}


@dataclass(frozen=True)
class Target:
    """One webhook. ``url`` is a secret: not in the repr, never printed."""

    name: str
    format: str
    url: str = field(repr=False)
    events: tuple[str, ...] = EVENTS


@dataclass(frozen=True)
class Settings:
    """How notices are sent; ``dashboard_url`` None: messages carry no link."""

    dashboard_url: str | None = None
    attempts: int = 4
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0
    timeout_seconds: float = 10.0


def fingerprint(url: str) -> str:
    """``url-`` + 12 hex digits of the URL's SHA-256: a name for a webhook without one."""
    return "url-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


def _config(env: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The ``[notify]`` table of evallib.toml ({} without a file) and the file's name."""
    path = Path(env.get("EVALLIB_CONFIG") or CONFIG_FILE)
    if not path.is_file():
        if env.get("EVALLIB_CONFIG"):
            raise EvallibError(f"EVALLIB_CONFIG names {path}, which is not a file")
        return {}, str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise EvallibError(f"{path}: not readable TOML: {e}") from None
    notify = data.get("notify", {})
    if not isinstance(notify, dict):
        raise EvallibError(f"{path}: [notify] must be a table")
    unknown = sorted(set(notify) - _NOTIFY_KEYS)
    if unknown:
        raise EvallibError(f"{path}: [notify]: unknown key {unknown[0]!r} (known: "
                           f"{', '.join(sorted(_NOTIFY_KEYS))})")
    return notify, str(path)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from evallib.toml's ``[notify]``; ``$EVALLIB_DASHBOARD_URL`` wins."""
    env = os.environ if env is None else env
    notify, path = _config(env)
    values: dict[str, Any] = {}
    for key, kind, low in (("attempts", int, 1), ("backoff_seconds", float, 0.0),
                           ("timeout_seconds", float, 0.1)):
        if key in notify:
            v = notify[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < low \
                    or (kind is int and not isinstance(v, int)):
                raise EvallibError(f"{path}: [notify] {key} must be a number of at least "
                                   f"{low}, not {v!r}")
            values[key] = kind(v)
    dashboard = env.get("EVALLIB_DASHBOARD_URL") or notify.get("dashboard_url")
    if dashboard is not None:
        if not isinstance(dashboard, str) or not _is_url(dashboard):
            raise EvallibError("the dashboard URL ($EVALLIB_DASHBOARD_URL or [notify] "
                               f"dashboard_url in {path}) must be an http(s) URL")
        values["dashboard_url"] = dashboard.rstrip("/")
    return Settings(**values)


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _webhook(spec: str, where: str) -> Target:
    """``[slack:|json:]URL`` → a Target named by its fingerprint; the format defaults to
    slack for hooks.slack.com, json elsewhere. The message never quotes ``spec``."""
    fmt, _, rest = spec.partition(":")
    url = rest if fmt in FORMATS else spec
    if not _is_url(url):
        raise EvallibError(f"{where}: not an http(s) webhook URL (the value is not shown: "
                           "webhook URLs are secrets)")
    if fmt not in FORMATS:
        fmt = "slack" if urlsplit(url).hostname == "hooks.slack.com" else "json"
    return Target(fingerprint(url), fmt, url)


@dataclass(frozen=True)
class _Declared:
    """A target of evallib.toml before its URL is read (only chosen ones are)."""

    name: str
    format: str
    events: tuple[str, ...]
    url: str | None = field(repr=False)
    url_env: str | None
    where: str

    def target(self, env: Mapping[str, str]) -> Target:
        url = self.url if self.url_env is None else env.get(self.url_env)
        if url is None:
            raise EvallibError(f"{self.where} ({self.name}): the environment variable "
                               f"{self.url_env} is not set")
        if not _is_url(url):
            raise EvallibError(f"{self.where} ({self.name}): the URL is not an http(s) URL "
                               "(the value is not shown: webhook URLs are secrets)")
        return Target(self.name, self.format, url, self.events)


def _declared(notify: Mapping[str, Any], path: str) -> list[_Declared]:
    """evallib.toml's ``[[notify.targets]]``, checked."""
    raw = notify.get("targets", [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise EvallibError(f"{path}: notify.targets must be an array of tables "
                           "([[notify.targets]])")
    out = []
    for i, t in enumerate(raw, 1):
        where = f"{path}: [[notify.targets]] #{i}"
        unknown = sorted(set(t) - _TARGET_KEYS)
        if unknown:
            raise EvallibError(f"{where}: unknown key {unknown[0]!r} (known: "
                               f"{', '.join(sorted(_TARGET_KEYS))})")
        name, fmt = t.get("name"), t.get("format", "slack")
        if not isinstance(name, str) or not name.strip():
            raise EvallibError(f"{where}: 'name' is required (a word for logs and the "
                               "warehouse, since the URL is never shown)")
        if fmt not in FORMATS:
            raise EvallibError(f"{where} ({name}): format must be slack or json, not {fmt!r}")
        events = t.get("events", list(EVENTS))
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            raise EvallibError(f"{where} ({name}): events must list alerts and/or gate")
        if ("url" in t) == ("url_env" in t):
            raise EvallibError(f"{where} ({name}): give exactly one of url and url_env")
        if not isinstance(t.get("url", t.get("url_env")), str):
            raise EvallibError(f"{where} ({name}): url and url_env are strings")
        out.append(_Declared(name.strip(), fmt, tuple(events), t.get("url"), t.get("url_env"),
                             where))
    return out


def _from_env(env: Mapping[str, str]) -> list[Target]:
    return [_webhook(spec, f"$EVALLIB_WEBHOOKS, webhook #{i}")
            for i, spec in enumerate(env.get("EVALLIB_WEBHOOKS", "").split(), 1)]


def resolve_targets(values: Sequence[str], event: str,
                    env: Mapping[str, str] | None = None) -> list[Target]:
    """The targets ``--notify`` names for ``event`` (alerts | gate): "" = every configured
    target for that event, NAME = evallib.toml's target, ``env:VAR`` = the webhook in
    $VAR, else a ``[slack:|json:]URL``. Deduplicated by URL; raises `EvallibError` (exit 2)
    for a name, variable or URL that does not resolve, or when nothing is configured."""
    env = os.environ if env is None else env
    notify, path = _config(env)
    declared = _declared(notify, path)
    by_name = {d.name: d for d in declared}
    out: list[Target] = []
    for value in values:
        if value == "":
            chosen = [d.target(env) for d in declared if event in d.events] + _from_env(env)
            if not chosen:
                raise EvallibError(
                    f"--notify: no webhook configured for {event} ({path}: "
                    "[[notify.targets]], or $EVALLIB_WEBHOOKS); or pass --notify URL")
            out.extend(chosen)
        elif value in by_name:
            out.append(by_name[value].target(env))
        elif value.startswith("env:"):
            var = value[4:]
            if not env.get(var):
                raise EvallibError(f"--notify {value}: the environment variable {var} is "
                                   "not set")
            out.append(_webhook(env[var], f"--notify {value}"))
        elif "/" in value or value.partition(":")[0] in FORMATS:  # never echoed
            out.append(_webhook(value, "--notify"))
        else:
            raise EvallibError(f"--notify {value}: no target of that name in {path} "
                               f"(targets: {', '.join(by_name) or 'none'}), and not a URL")
    first: dict[str, Target] = {}  # the first target of each URL, in order
    for t in out:
        first.setdefault(t.url, t)
    return list(first.values())
