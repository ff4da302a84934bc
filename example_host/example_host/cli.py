"""The `example-host` command: `serve`, `plugins`, `--version`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .app import STARTUP_ERRORS, build_app
from .config import ConfigError, load_config_file, validate_config
from .plugins import list_plugins

__all__ = ["main"]

EXIT_CONFIG = 2  # bad config or plugin: one line on stderr
EXIT_STARTUP = 3  # a plugin's lifespan failed to start


class _Terminated(Exception):
    """Raised by our SIGTERM handler once uvicorn has shut down cleanly and re-raised the signal."""


def _parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="example-host", description="MockForge example host: a mock API server with plugins."
    )
    parser.add_argument("--version", action="version", version=f"example-host {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the mock routes of a config file")
    serve.add_argument("--config", required=True, type=Path, help="YAML config file")
    serve.add_argument("--host", help="address to listen on (default: server.host or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: server.port or 8080; 0 picks a free one)")
    serve.add_argument("--demo-traffic", action="store_true", help="send built-in demo traffic to itself")
    serve.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    plugins = sub.add_parser("plugins", help="list discovered plugins, their hooks and state")
    plugins.add_argument("--config", type=Path, help="config file deciding which plugins are on")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _fail(message: str) -> int:
    """Print one error line and return the config-error exit status."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def _free_port(host: str) -> int:
    """A port the OS says is free now (for --port 0, so demo traffic knows where to go)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _serve(args: argparse.Namespace) -> int:
    """Validate, build, then run under uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    logging.basicConfig(
        level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s", stream=sys.stderr
    )
    # The demo traffic's own client would log every request at INFO.
    for noisy in ("httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.port is not None and not 0 <= args.port <= 65535:
        return _fail(f"--port: must be between 0 and 65535, got {args.port}")
    try:
        raw = load_config_file(args.config)
        cfg = validate_config(raw)
        host = args.host or cfg.host or "127.0.0.1"
        port = args.port if args.port is not None else (cfg.port if cfg.port is not None else 8080)
        if port == 0:
            port = _free_port(host)
        app = build_app(
            cfg,
            config_path=args.config,
            listen_host=host,
            listen_port=port,
            demo_traffic=args.demo_traffic,
            freeze_gc=True,
        )
    except STARTUP_ERRORS as exc:
        return _fail(str(exc))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=args.log_level,
            access_log=not args.demo_traffic,  # demo traffic would flood the terminal
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )

    def on_term(signum: int, frame: Any) -> None:
        raise _Terminated

    # uvicorn handles SIGINT/SIGTERM itself, shuts down (plugin lifespans exit), then re-raises the
    # signal to the previous handler: ours turns it into a clean exit 0.
    signal.signal(signal.SIGTERM, on_term)
    with contextlib.suppress(KeyboardInterrupt, _Terminated):
        server.run()
    if not server.started:
        return EXIT_STARTUP
    return 0


def _plugins(args: argparse.Namespace) -> int:
    """Print every discovered plugin with version, hooks and enabled state."""
    sections: dict[str, dict[str, Any]] = {}
    try:
        if args.config is not None:
            sections = validate_config(load_config_file(args.config)).plugins
    except ConfigError as exc:
        return _fail(str(exc))
    infos = list_plugins(sections)
    known = {info.name for info in infos}
    for name in sections:
        if name not in known:
            installed = ", ".join(sorted(i.name for i in infos if not i.builtin)) or "none"
            return _fail(f"plugin '{name}' is named in config but not installed (installed: {installed})")
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    for info in infos:
        if info.builtin:
            state = "on (built in)"
        elif info.enabled:
            state = "on"
        elif args.config is None:
            state = "off (no --config given)"
        elif info.name in sections:
            state = "off (enabled: false)"
        else:
            state = "off (no config section)"
        print(f"{info.name} {info.version or '?'}  {state}")
        print(f"    source: {info.source}")
        print(f"    hooks: {', '.join(info.hooks) or '-'}")
        if info.error:
            print(f"    error: {info.error}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `example-host` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        return _plugins(args)
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signals
        return 130


if __name__ == "__main__":
    sys.exit(main())
