"""``python -m sms_provider.receiver --host H --port P --config FILE --data-root PATH``.

Serves the push endpoints with uvicorn (time limits for slow clients and a
connection bound from the config, :mod:`sms_provider.receiver.server`) and, in a
background thread, compacts
landed pushes into Parquet every ``--compact-every`` seconds (0: never; then
run :func:`sms_provider.receiver.compaction.compact` elsewhere, e.g. the Airflow
task). Compaction failures are logged and retried on the next round: the
landing files stay until a compaction succeeds.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

import uvicorn

from sms_provider.data.locations import ENV_DATA_ROOT, data_location
from sms_provider.data.storage import DataRoot
from sms_provider.receiver.app import create_app
from sms_provider.receiver.compaction import compact
from sms_provider.receiver.config import ENV_CONFIG, ReceiverConfig, ReceiverConfigError
from sms_provider.receiver.redaction import install_log_redaction
from sms_provider.receiver.server import HTTP_IMPLEMENTATIONS, server_config

log = logging.getLogger("sms_provider.receiver")


class Compactor(threading.Thread):
    """Runs :func:`compact` every ``every`` seconds until stopped."""

    def __init__(self, root: DataRoot, config: ReceiverConfig, every: float) -> None:
        super().__init__(name="receiver-compactor", daemon=True)
        self.root, self.config, self.every = root, config, every
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                compact(self.root, self.config)
            except Exception as exc:  # keep serving; the files wait for the next round
                log.error("compaction failed: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sms_provider.receiver",
                                     description="Receive SMS vendor pushes durably.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--config", default=os.environ.get(ENV_CONFIG),
                        help=f"receiver config JSON (default: ${ENV_CONFIG})")
    parser.add_argument("--data-root",
                        default=data_location(),
                        help=f"local folder or object-store URI (default: ${ENV_DATA_ROOT}, "
                             "else data/ in the checkout, as for the Airflow tasks)")
    parser.add_argument("--compact-every", type=float, default=30.0,
                        help="seconds between compactions; 0 turns them off (default 30)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--no-access-log", action="store_true",
                        help="no per-request access log lines")
    parser.add_argument("--http", choices=HTTP_IMPLEMENTATIONS, default="auto",
                        help="uvicorn's HTTP parser (default auto: httptools if installed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.config:
        print(f"receiver: give --config or set {ENV_CONFIG}", file=sys.stderr)
        return 2
    try:
        config = ReceiverConfig.from_file(args.config)
    except ReceiverConfigError as exc:
        print(f"receiver: {exc}", file=sys.stderr)
        return 2
    root = DataRoot(args.data_root)
    settings = server_config(create_app(config, root), config, host=args.host,
                             port=args.port, http=args.http,
                             log_level=args.log_level.lower(),
                             access_log=not args.no_access_log)
    install_log_redaction()  # after uvicorn configured its loggers
    compactor = Compactor(root, config, args.compact_every) if args.compact_every > 0 else None
    if compactor:
        compactor.start()
    log.info("receiving pushes for %s into %s",
             ", ".join(c.conn_id for c in config.connections), root.uri)
    try:
        uvicorn.Server(settings).run()
    finally:
        if compactor:
            compactor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
