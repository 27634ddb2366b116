"""The Presence service (RFC 3856 / 3903 / 3863 / 3857): SUBSCRIBE, NOTIFY, PUBLISH, PIDF.

The SBBs live in ``sbbs``; the pure, sans-IO parts (PIDF parsing and composition, watcher
information documents, configuration) in ``pidf``, ``winfo`` and ``config``. Modules in this
package import each other relatively: the deployer loads it under a per-version namespace.
"""

__all__: list[str] = []
