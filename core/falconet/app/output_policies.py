"""Step "output policies": each output's routing (``match:``), aggregation and spool settings,
compiled once at start (docs/outputs.md); the state directory the spools need is checked before
any output starts; ``/healthz`` reads each output's queue and spool through :func:`health`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from falconet.app.errors import StartupError
from falconet.delivery.setup import PolicyError, build_policies, outputs_health, prepare_state_dirs
from falconet.delivery.statedir import StateDirError

if TYPE_CHECKING:
    from falconet.app.engine import App


def output_policies(app: App) -> dict[str, Any]:
    """Compiled once; a bad ``match:`` or ``aggregate:`` is a :class:`StartupError` with
    file:line:col."""
    if app.policies is None:
        # the step modules import each other one way; load_plugins is reached from here lazily
        from falconet.app.load_plugins import load_plugins  # noqa: PLC0415
        load_plugins(app)
        try:
            app.policies = build_policies(app.config, app.sinks, app.ctx.fields)
        except PolicyError as e:
            raise StartupError("invalid output settings:\n" + "\n".join(e.problems)) from None
    return app.policies


def check_state_dir(app: App) -> None:
    """Before any output starts: an unsafe or unusable ``state_dir`` stops the start (an output
    that silently lost its spool would drop what it promised to keep)."""
    try:
        prepare_state_dirs(output_policies(app))
    except StateDirError as e:
        raise StartupError(f"state_dir: {e}") from None


def health(app: App) -> tuple[bool, dict[str, Any]]:
    """``/healthz``: ``degraded`` (still 200) while an output spools (docs/outputs.md)."""
    return outputs_health(app.pipeline.workers if app.pipeline is not None else [])
