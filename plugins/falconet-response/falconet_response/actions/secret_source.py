"""Secrets named in config (an env var or a file), read when used and never shown.

A :class:`SecretRef` is what the params hold: the *name* of the variable or the path of the file,
never the value, so normalised params can be logged and audited. It is read at load time once
(a missing secret is a config error, not a surprise at the first alert) and again at each use (a
rotated Kubernetes Secret volume is picked up without a restart). Files are read through
symlinks on purpose: Secret volumes are symlinks (``..data/``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SECRET_BYTES = 64 * 1024


class SecretError(ValueError):
    """A secret cannot be read; the message names its source, never its value."""


@dataclass(frozen=True)
class SecretRef:
    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"

    def read(self) -> str:
        """The value, stripped of surrounding whitespace (a trailing newline in a file)."""
        if self.env:
            value = os.environ.get(self.env)
            if not value:
                raise SecretError(f"environment variable {self.env} is not set")
            return value.strip()
        assert self.file
        try:
            with open(self.file, "rb") as f:
                data = f.read(MAX_SECRET_BYTES + 1)
        except OSError as e:
            raise SecretError(f"cannot read {self.file}: {e.strerror or type(e).__name__}") from None
        if len(data) > MAX_SECRET_BYTES:
            raise SecretError(f"{self.file} is larger than {MAX_SECRET_BYTES} bytes")
        value = data.decode("utf-8", "replace").strip()
        if not value:
            raise SecretError(f"{self.file} is empty")
        return value

    def to_params(self, env_key: str, file_key: str) -> dict[str, str]:
        return {env_key: self.env} if self.env else {file_key: str(self.file)}


def secret_ref(params: Mapping[str, Any], env_key: str, file_key: str) -> SecretRef | None:
    """The reference in ``params[env_key]`` / ``params[file_key]`` (at most one), or ``None``.
    Raises :class:`ValueError` saying what was expected."""
    env, path = params.get(env_key), params.get(file_key)
    if env is not None and path is not None:
        raise ValueError(f"give {env_key} or {file_key}, not both")
    if env is not None:
        if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
            raise ValueError(f"{env_key} must be an environment variable name, got {env!r}")
        return SecretRef(env=env)
    if path is not None:
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ValueError(f"{file_key} must be an absolute path, got {path!r}")
        return SecretRef(file=path)
    return None


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of each secret (longest first) replaced by ``***``."""
    for s in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, "***")
    return text
