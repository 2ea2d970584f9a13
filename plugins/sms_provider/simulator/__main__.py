"""``python -m sms_provider.simulator --host H --port P --config FILE``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sms_provider.simulator.app import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sms_provider.simulator",
                                     description="Simulate the five SMS vendor APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--config", required=True, type=Path,
                        help="JSON file: vendor accounts, simulation settings, faults")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = json.loads(args.config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"simulator: cannot read config {args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        sim = Simulator(config)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"simulator: bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    server = sim.make_server(args.host, args.port)
    sim.start_pusher()
    host, port = server.server_address[:2]
    print(f"simulator listening on http://{host}:{port} for {', '.join(sorted(sim.vendors))}",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
