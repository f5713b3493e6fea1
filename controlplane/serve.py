"""Run the web server: N uvicorn processes, each with its own listening socket on one port.

``uvicorn --workers N`` hands one shared socket to every worker, and whichever worker accepts
first takes the connection: with agents keeping their connections alive, one worker can end up
serving most of them while another idles. Here each process binds its own socket with
``SO_REUSEPORT``, and the kernel spreads new connections across them evenly.

    python -m controlplane.serve [--host 127.0.0.1] [--port 8000] [--workers 1]

With Redis and PostgreSQL (production) run one worker per core (``WEB_WORKERS``); the embedded
default keeps budget counters and the channel layer in its one process.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import signal
import socket
import sys

import uvicorn


def _socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _serve(host: str, port: int, log_level: str) -> None:
    config = uvicorn.Config(
        "controlplane.asgi:application",
        log_level=log_level,
        access_log=False,
        lifespan="off",
    )
    config.load()
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # way, so a full collection walks only what requests allocate (shorter, rarer pauses).
    gc.freeze()
    uvicorn.Server(config).run(sockets=[_socket(host, port)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("TETHER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("TETHER_PORT", "8000")))
    # One by default: the embedded default's counters and channel layer live in the process.
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_WORKERS", "1")))
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers == 1:
        return _serve(args.host, args.port, args.log_level)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_serve, args=(args.host, args.port, args.log_level))
        for _ in range(args.workers)
    ]
    for worker in workers:
        worker.start()

    def stop(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid or 0, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.join()
    # uvicorn shuts down cleanly on SIGTERM/SIGINT and then re-raises the signal: that is a stop.
    stopped = {0, -signal.SIGTERM, -signal.SIGINT}
    sys.exit(0 if all(w.exitcode in stopped for w in workers) else 1)


if __name__ == "__main__":
    main()
