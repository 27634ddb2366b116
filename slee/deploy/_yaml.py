"""YAML read as a node tree, so every semantic error can name the line it is about.

``yaml.safe_load`` forgets where values came from; ``yaml.compose`` keeps a start mark on
every node. These helpers walk that tree with the checks manifests and recipes share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from slee.deploy._errors import DeployError


class Doc:
    """One YAML file: its name for messages and its root node."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            reason = f"YAML syntax error: {exc.problem or exc}"
            if exc.context:
                reason += f" ({exc.context})"
            raise DeployError(file, line, reason) from None
        except yaml.YAMLError as exc:
            raise DeployError(file, None, f"YAML error: {exc}") from None
        if root is None:
            raise DeployError(file, 1, "the file is empty")
        self.root = root

    @classmethod
    def read(cls, path: Path, text: str | None = None) -> Doc:
        if text is None:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise DeployError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
            except UnicodeDecodeError as exc:
                raise DeployError(str(path), None, f"not UTF-8 text: {exc}") from None
        return cls(str(path), text)

    # -- node access ---------------------------------------------------------------------
    def error(self, node: yaml.Node | None, reason: str) -> DeployError:
        return DeployError(self.file, line_of(node), reason)

    def mapping(self, node: yaml.Node, what: str, allowed: set[str] | None = None) -> dict[str, yaml.Node]:
        """The keys of a mapping node (duplicates and unknown keys refused)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key of {what}")
            if key in out:
                raise self.error(key_node, f"{what}: key {key!r} appears twice")
            if allowed is not None and key not in allowed:
                raise self.error(key_node, f"{what}: unknown key {key!r}; known keys: {', '.join(sorted(allowed))}")
            out[key] = value_node
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{what} must be a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, what: str) -> str:
        """A scalar as text (numbers too: ``version: 1.0`` means the string "1.0")."""
        if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.error(node, f"{what} must be a single value")
        text = str(node.value).strip()
        if not text:
            raise self.error(node, f"{what} is empty")
        return text

    def integer(self, node: yaml.Node, what: str) -> int:
        text = self.scalar(node, what)
        try:
            return int(text)
        except ValueError:
            raise self.error(node, f"{what} must be an integer, not {text!r}") from None

    def plain(self, node: yaml.Node) -> Any:
        """A subtree as plain Python values (for free-form config)."""
        return yaml.SafeLoader(self.file).construct_document(node)

    def required(self, keys: dict[str, yaml.Node], key: str, parent: yaml.Node, what: str) -> yaml.Node:
        node = keys.get(key)
        if node is None:
            raise self.error(parent, f"{what} needs {key!r}")
        return node


def line_of(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


__all__ = ["Doc", "line_of"]
