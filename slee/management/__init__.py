"""The management API (HTTP+JSON, loopback only, bearer token) and its client for the CLI."""

from slee.management._api import ManagementApi
from slee.management._bind import NotLoopbackError, check_loopback
from slee.management._client import ApiError, ContainerNotRunning, ManagementClient
from slee.management._files import ensure_token, read_endpoint, read_token

__all__ = [
    "ApiError",
    "ContainerNotRunning",
    "ManagementApi",
    "ManagementClient",
    "NotLoopbackError",
    "check_loopback",
    "ensure_token",
    "read_endpoint",
    "read_token",
]
