"""The REST API transport (issue 12): optional, needs the ``http`` extra.

Imported only when a coordinator serves HTTP, so the file queue works without Starlette,
Hypercorn or prometheus_client installed.
"""

from supervisor.protocol import HTTP_FILE

from ._server import HttpRefused, HttpTransport, parse_bind

__all__ = ["HTTP_FILE", "HttpRefused", "HttpTransport", "parse_bind"]
