"""The Proxy service (RFC 3261 §16): MESSAGE, INVITE and other requests to registered AORs."""
