"""`python -m service.healthcheck`: exit 0 when the local service answers /healthz, else 1.

For container HEALTHCHECKs: it reads the port from the same settings as the service
(GAN_SERVE_PORT) and needs nothing beyond the standard library at run time."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.config import Settings


def main() -> int:
    port = Settings().port
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as e:
        print(f"healthcheck: http://127.0.0.1:{port}/healthz: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
