"""The registry's HTTP server: the JSON API (``/api/v1``, bearer tokens) and the review page."""

from plantml.registry.server.app import create_app

__all__ = ["create_app"]
