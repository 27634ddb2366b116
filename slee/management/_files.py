"""What a running container leaves in its data dir for the CLI: address and token.

``mgmt.json`` says where the management API listens (and which process serves it);
``mgmt.token`` holds the bearer token, readable by the owner only (mode 0600). The CLI finds
a container through these two files, so ``--data`` is all it needs.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

ENDPOINT_FILE = "mgmt.json"
TOKEN_FILE = "mgmt.token"


def ensure_token(data_dir: Path) -> str:
    """The token in the data dir, created (0600) if there is none or it is unusable."""
    path = data_dir / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if len(token) >= 32 and (path.stat().st_mode & 0o077) == 0:
            return token
    except OSError:
        pass
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def read_token(data_dir: Path) -> str:
    return (data_dir / TOKEN_FILE).read_text().strip()


def write_endpoint(data_dir: Path, info: dict[str, Any]) -> None:
    path = data_dir / ENDPOINT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


def read_endpoint(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / ENDPOINT_FILE).read_text())
    except (OSError, ValueError):
        return None


def remove_endpoint(data_dir: Path) -> None:
    (data_dir / ENDPOINT_FILE).unlink(missing_ok=True)
