"""The CLI's side of the management API: find the container through the data dir, call it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from slee.management._files import ENDPOINT_FILE, read_endpoint, read_token


class ContainerNotRunning(RuntimeError):
    """No container answers for this data dir; the message says how to start one."""


class ApiError(RuntimeError):
    """The container refused the call; ``status`` is the HTTP status, ``payload`` the JSON."""

    def __init__(self, status: int, message: str, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.payload = payload or {}


class ManagementClient:
    """Blocking calls for the CLI (one short-lived aiohttp session per call)."""

    def __init__(self, data_dir: str | Path, *, timeout: float = 120.0) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = timeout
        endpoint = read_endpoint(self.data_dir)
        hint = f"no container running in {data_dir} — start one with bin/slee start --data {data_dir}"
        if endpoint is None:
            raise ContainerNotRunning(hint)
        try:
            self.token = read_token(self.data_dir)
        except OSError as exc:
            raise ContainerNotRunning(f"cannot read the management token in {data_dir}: {exc.strerror}") from None
        self.url = f"http://{_host(endpoint['host'])}:{endpoint['port']}"
        self.pid = endpoint.get("pid")
        self._hint = hint

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             query: dict[str, str] | None = None) -> Any:
        return asyncio.run(self._call(method, path, body, query, None))

    def stream(self, path: str, body: dict[str, Any], on_progress: Callable[[str], None]) -> Any:
        """POST a long operation; ``on_progress`` sees each step as it happens."""
        return asyncio.run(self._call("POST", path, body, None, on_progress))

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, query: dict[str, str] | None,
                    on_progress: Callable[[str], None] | None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session, session.request(
                method, self.url + path, json=body, params=query
            ) as resp:
                if resp.content_type == "application/x-ndjson":
                    return await _read_stream(resp, on_progress)
                try:
                    payload = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    payload = {"error": (await resp.text())[:500]}
                if resp.status >= 400:
                    raise ApiError(resp.status, payload.get("error", f"HTTP {resp.status}"), payload)
                return payload
        except aiohttp.ClientConnectorError:
            raise ContainerNotRunning(f"{self._hint} (nothing answers at {self.url}; "
                                      f"{ENDPOINT_FILE} is stale)") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise ContainerNotRunning(f"the container at {self.url} went away: {exc}") from None
        except TimeoutError:
            raise ApiError(504, f"the container did not answer within {self.timeout:.0f}s") from None


async def _read_stream(resp: aiohttp.ClientResponse, on_progress: Callable[[str], None] | None) -> Any:
    final: dict[str, Any] | None = None
    async for raw in resp.content:
        line = raw.strip()
        if not line:
            continue
        item = json.loads(line)
        if "progress" in item:
            if on_progress is not None:
                on_progress(item["progress"])
        else:
            final = item
    if final is None:
        raise ApiError(502, "the container ended the answer early")
    if "error" in final:
        raise ApiError(final.get("status", 500), final["error"], final)
    return final["result"]


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
