"""The Registrar service (RFC 3261 §10, RFC 3327): REGISTER into the location service."""
