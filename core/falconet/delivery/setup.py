"""Build every output's :class:`OutputPolicy` from the configuration, once at start.

Where an output's delivery settings live:

- built-in outputs: ``outputs.<stdout|file|webhook>.{match, aggregate, spool}``;
- a plugin's sinks: ``plugins.<plugin>.{match, aggregate, spool}`` (the engine takes these keys
  out of the section before the plugin's ``falconet_configure`` sees it).

``match:`` is compiled here with the one matcher (:func:`falconet.alertmatch.compile_match`), so a
bad condition stops the start with ``file:line:col``; ``spool:`` applies only to sinks that opt
in (``spool = True``, see ``falconet.api.SpoolingSink``) and only when ``state_dir`` is set.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from falconet.delivery.policy import OutputPolicy, check_aggregate, check_spool
from falconet.delivery.statedir import private_dir

#: the plugin that contributes the built-in outputs (their settings are under ``outputs.*``)
BUILTIN_OUTPUTS = "outputs"


class PolicyError(Exception):
    """Invalid delivery settings; ``problems`` are complete ``file:line:col: ...`` messages."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _section(config: Any, plugin: str, sink_name: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    if plugin == BUILTIN_OUTPUTS:
        path: tuple[str, ...] = ("outputs", sink_name)
        sec = config.data.get("outputs", {}).get(sink_name)
    else:
        path = ("plugins", plugin)
        sec = config.data.get("plugins", {}).get(plugin)
    return path, sec if isinstance(sec, dict) else {}


def _where(config: Any, path: tuple[str, ...]) -> str:
    fn = getattr(config, "where", None)
    return fn(path) if fn is not None else "<config>"


def state_dir_of(config: Any) -> str | None:
    """``state_dir`` from the config, else None (no spool). Deliberately not
    ``$FALCONET_STATE_DIR`` (which the learning plugin falls back to): a spool replays what a
    previous run left, so it is kept only where the configuration says."""
    return config.data.get("state_dir") or None


def build_policies(config: Any, sinks: Iterable[tuple[str, Any]], registry: Any
                   ) -> dict[str, OutputPolicy]:
    """``{output name: OutputPolicy}`` for ``sinks`` (``(plugin, sink)`` pairs). Raises
    :class:`PolicyError` with every problem."""
    problems: list[str] = []
    out: dict[str, OutputPolicy] = {}
    state_dir = state_dir_of(config)
    for plugin, sink in sinks:
        name = str(getattr(sink, "name", plugin))
        path, sec = _section(config, plugin, name)
        dotted = ".".join(path)
        matcher = None
        spec = sec.get("match")
        if spec:
            try:
                matcher = _compile(spec, registry, _where(config, (*path, "match")), config)
            except ValueError as e:
                problems += getattr(e, "problems", None) or [
                    f"{_where(config, (*path, 'match'))}: error: {dotted}.match: {e}"]
        try:
            agg = check_aggregate(sec.get("aggregate"))
            if agg:
                _check_fields(agg["by"], registry)
        except ValueError as e:
            problems.append(f"{_where(config, (*path, 'aggregate'))}: error: "
                            f"{dotted}.aggregate: {e}")
            agg = None
        spool = None
        if getattr(sink, "spool", False) is True:
            try:
                spool = check_spool(sec.get("spool"))
            except ValueError as e:
                problems.append(f"{_where(config, (*path, 'spool'))}: error: {dotted}.spool: {e}")
            if spool is not None and (not spool["enabled"] or not state_dir):
                spool = None            # no state_dir: no spool (docs/outputs.md)
        elif sec.get("spool") not in (None, False) and plugin != BUILTIN_OUTPUTS:
            problems.append(f"{_where(config, (*path, 'spool'))}: error: {dotted}.spool: output "
                            f"'{name}' cannot spool (its sink does not declare spool = True)")
        if matcher is not None or agg or spool:
            out[name] = OutputPolicy(matcher, agg, spool, state_dir if spool else None)
    if problems:
        raise PolicyError(problems)
    return out


def _compile(spec: Any, registry: Any, where: str, config: Any) -> Any:
    """The one matcher (i13's ``falconet.alertmatch``); its ``MatchError`` carries ``problems``."""
    from falconet.alertmatch import MatchError, compile_match  # noqa: PLC0415

    try:
        return compile_match(spec, registry, where=where)
    except MatchError as e:
        err = ValueError(str(e))
        err.problems = list(e.problems)  # type: ignore[attr-defined]
        raise err from None


def _check_fields(tokens: list[str], registry: Any) -> None:
    """``aggregate.by`` names fields the registry knows (``name`` or ``name[arg]``)."""
    for tok in tokens:
        name, _, rest = tok.partition("[")
        arg = rest[:-1] if rest.endswith("]") else (rest or None)
        try:
            registry.lookup(name, arg or None)
        except LookupError:
            raise ValueError(f"by: unknown field {tok!r}") from None


def capture_fields(policies: dict[str, OutputPolicy]) -> frozenset[str]:
    """Every field token the policies read (for ``load_rules(capture_fields=...)``)."""
    out: set[str] = set()
    for p in policies.values():
        out |= p.fields
    return frozenset(out)


def prepare_state_dirs(policies: dict[str, OutputPolicy]) -> None:
    """Create (0700) or check every state directory a spool will use, and its ``spool/``.
    Raises :class:`~falconet.delivery.statedir.StateDirError`."""
    for state_dir in sorted({p.state_dir for p in policies.values() if p.state_dir}):
        private_dir(state_dir)
        private_dir(Path(state_dir) / "spool")


def outputs_health(workers: Iterable[Any]) -> tuple[bool, dict[str, Any]]:
    """``/healthz`` details: each output's state and queue depth (a spooling output adds its
    spool); ``"status": "degraded"`` (the engine is still healthy: HTTP 200) while an output
    spools after a failed delivery or its queue is over half full."""
    outputs: dict[str, Any] = {}
    degraded = False
    for w in workers:
        h = w.health() if hasattr(w, "health") else {"state": "ok"}
        h["queue_depth"] = w.queue.qsize()
        if w.queue.maxsize and h["queue_depth"] * 2 > w.queue.maxsize and h["state"] == "ok":
            h["state"] = "backlog"
        degraded = degraded or h["state"] != "ok"
        outputs[w.name] = h
    return True, {"status": "degraded" if degraded else "ok", "outputs": outputs}


def delivery_summary(metrics: Any, name: str, spool: Any = None) -> list[str]:
    """What the run summary adds for one output: alerts its ``match:`` passed over, alerts
    folded into aggregation summaries, alerts still in its spool (delivered at the next start)."""
    out = []
    if metrics.output_unmatched.get(name):
        out.append(f"{metrics.output_unmatched[name]} not matched")
    if metrics.output_aggregated.get(name):
        out.append(f"{metrics.output_aggregated[name]} folded into "
                   f"{metrics.output_summaries.get(name, 0)} summaries")
    if spool is not None and spool.depth:
        out.append(f"{spool.depth} kept in the spool")
    return out
