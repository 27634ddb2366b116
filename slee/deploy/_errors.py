"""Why a deployment was refused, and where: every error names a file and a line."""

from __future__ import annotations

from slee.errors import ValidationError


class DeployError(ValidationError):
    """A unit or recipe was refused before anything changed; ``str()`` is ``file:line: reason``."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        self.file = file
        self.line = line
        self.reason = reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")


__all__ = ["DeployError"]
