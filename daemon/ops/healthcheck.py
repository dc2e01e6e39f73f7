"""``python -m tandem.daemon.ops.healthcheck``: exit 0 when the local daemon reports ``/health`` ok.

Used by the Docker ``HEALTHCHECK`` (slim images have no curl). It always asks loopback —
inside the container the server listens on every interface, and loopback is one of them —
on ``$TANDEM_HTTP_PORT`` and sends ``$TANDEM_HTTP_TOKEN`` when set. The token comes from the
runtime environment (``env_file``), never from the image, and is never printed.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    """Return 0 if ``/health`` answers 200 within the timeout, else 1."""
    port = int(os.environ.get("TANDEM_HTTP_PORT", "8080"))
    req = urllib.request.Request(f"http://127.0.0.1:{port}/health")
    token = os.environ.get("TANDEM_HTTP_TOKEN", "")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (fixed loopback URL)
            body = resp.read(2000).decode(errors="replace")
            print(body)
            return 0 if resp.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503 degraded / 401: print the body, not headers
        print(exc.read(2000).decode(errors="replace"))
        return 1
    except OSError as exc:
        print(f"unreachable: {exc.__class__.__name__}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
