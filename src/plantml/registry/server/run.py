"""``plantml-registry serve``: uvicorn on loopback by default, TLS when given a certificate.

Access and error logs pass through :class:`RedactTokens`, which blanks anything shaped like an
API token, whatever logged it (tokens only ever travel in headers and POST bodies, which
uvicorn does not log, so this is a second line of defence).
"""

from __future__ import annotations

import ipaddress
import logging
import sys

from plantml.registry.errors import RegistryError
from plantml.registry.identity import TOKEN_PATTERN


class RedactTokens(logging.Filter):
    """Replace API tokens in log records with ``pmr_<redacted>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = TOKEN_PATTERN.sub("pmr_<redacted>", record.msg)
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                TOKEN_PATTERN.sub("pmr_<redacted>", a) if isinstance(a, str) else a for a in args
            )
        return True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    reg,
    host: str = "127.0.0.1",
    port: int = 8765,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> int:
    """Run the server until interrupted."""
    import uvicorn

    from plantml.registry.server.app import create_app

    if bool(certfile) != bool(keyfile):
        raise RegistryError("TLS needs both --certfile and --keyfile")
    if not _loopback(host) and not certfile:
        print(
            f"warning: serving on {host} without TLS: tokens cross the network in clear; pass --certfile/--keyfile",
            file=sys.stderr,
        )
    _ = reg.signer  # load the key now: a missing key fails at start, not at the first action
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    app = create_app(reg, secure_cookies=bool(certfile))
    scheme = "https" if certfile else "http"
    print(f"plantml registry at {scheme}://{host}:{port}/ (store {reg.home})", flush=True)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
        log_level="info",
        server_header=False,
    )
    return 0
