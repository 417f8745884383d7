"""Fresh TLS connections, one request each: the time to the first response byte.

Runs ``curl`` once per connection, one after another (a browser's or an API
client's first request on a new connection), over TLS 1.3 and HTTP/1.1, and
prints one JSON line: how many, the p50 and p99 of the time from the start of
the connection to the first response byte (curl's ``time_starttransfer``:
TCP connect, TLS handshake, request, response head), and of the wait after the
handshake alone (``time_starttransfer - time_appconnect``), where a server that
leaves Nagle's algorithm on loses ~40 ms to a delayed ACK now and then.

    python tlsfirst.py --port 8443 --count 200
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time


def percentile(ordered: list[float], fraction: float) -> float:
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--path", default="/")
    args = parser.parse_args(argv)
    curl = shutil.which("curl")
    if curl is None:
        print("curl is needed (apt-get install curl)", file=sys.stderr)
        return 2
    first: list[float] = []
    after_handshake: list[float] = []
    errors = 0
    started = time.perf_counter()
    for _ in range(args.count):
        done = subprocess.run(
            [curl, "-s", "-k", "-o", "/dev/null", "--tlsv1.3", "--http1.1", "--max-time", "10"]
            + ["-w", "%{http_code} %{time_appconnect} %{time_starttransfer}"]
            + [f"https://127.0.0.1:{args.port}{args.path}"],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            code, connected, first_byte = done.stdout.split()
        except ValueError:
            errors += 1
            continue
        if code != "200":
            errors += 1
            continue
        first.append(float(first_byte))
        after_handshake.append(float(first_byte) - float(connected))
    wall = time.perf_counter() - started
    first.sort()
    after_handshake.sort()
    result = {
        "count": len(first),
        "errors": errors,
        "wall_s": wall,
        "p50_us": percentile(first, 0.50) * 1e6 if first else None,
        "p99_us": percentile(first, 0.99) * 1e6 if first else None,
        "after_handshake_p50_us": percentile(after_handshake, 0.50) * 1e6 if first else None,
        "after_handshake_p99_us": percentile(after_handshake, 0.99) * 1e6 if first else None,
    }
    print(json.dumps(result))
    return 0 if first else 1


if __name__ == "__main__":
    sys.exit(main())
