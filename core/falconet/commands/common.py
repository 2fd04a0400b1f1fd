"""What every ``falconet`` subcommand shares: the configuration and engine arguments, logging,
and :func:`guarded`, which turns configuration, plugin and start-up errors into one clear message
and an exit status instead of a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from falconet.app import StartupError
from falconet.config import Config, ConfigError, default_config_path, load_config
from falconet.plugins import PluginRequiredError


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE",
                   help="configuration file (default: $FALCONET_CONFIG, /etc/falconet/falconet.yaml)")
    p.add_argument("-o", "--option", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key, e.g. -o json_output=true "
                   "or -o plugins.container.required=true (repeatable)")


def add_engine_arguments(p: argparse.ArgumentParser, *, metrics_default: bool = True) -> None:
    add_config_arguments(p)
    p.add_argument("-r", "--rules", action="append", metavar="FILE",
                   help="rules file or directory (repeatable; default: rules_files from the "
                        "config, else the default rules directory)")
    p.add_argument("--json", action="store_true", help="print alerts as JSON lines (json_output)")
    if metrics_default:
        p.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    p.add_argument("--metrics-address", metavar="ADDR", help="metrics bind address "
                   "(default: metrics.address, 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="metrics port (default: metrics.port, 8765)" if metrics_default else
                   "serve /metrics on PORT (only when given)")


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "json", False):
        overrides.append("json_output=true")
    path = getattr(args, "config", None) or default_config_path()
    return load_config(path, overrides)


def metrics_address(args: argparse.Namespace, cfg: Config, *, default_on: bool
                    ) -> tuple[str, int] | None:
    """Where to serve metrics, or ``None``: ``run``/``record`` follow ``metrics.enabled``
    unless ``--no-metrics``; ``replay`` serves only when ``--metrics-port`` is given."""
    if getattr(args, "no_metrics", False):
        return None
    if default_on:
        if not cfg["metrics"]["enabled"] and args.metrics_port is None:
            return None
    elif args.metrics_port is None:
        return None
    addr = args.metrics_address or cfg["metrics"]["address"]
    port = args.metrics_port if args.metrics_port is not None else cfg["metrics"]["port"]
    return addr, port


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="falconet: %(levelname)s: %(message)s", stream=sys.stderr)


def quiet_plugin_log() -> None:
    """Listing commands show plugin failures themselves; don't log them twice."""
    logging.getLogger("falconet.plugins").setLevel(logging.CRITICAL)


def fail(msg: str, code: int = 1) -> int:
    print(f"falconet: error: {msg}", file=sys.stderr)
    return code


def guarded(fn: Callable[[], int]) -> int:
    """Run a command body: configuration, plugin and startup errors become one clear message and
    exit code 1 (2 for configuration), never a traceback."""
    from falconet.capture import CaptureError  # noqa: PLC0415

    try:
        return fn()
    except ConfigError as e:
        for p in e.problems:
            print(f"falconet: {p}", file=sys.stderr)
        return 2
    except (StartupError, CaptureError, PluginRequiredError) as e:
        return fail(str(e))
