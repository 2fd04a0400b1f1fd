"""Step "kernel filter": the filter the eBPF collector applies in the kernel, derived from the
loaded rules (:func:`falconet.rules.kfilter.derive`) and the event types plugins need whole
(``falconet_unfiltered_event_types``); handed to the source as ``options["kernel_filter"]``
(``None`` with ``collector.kernel_filter: false``). See docs/kernel-filter.md."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from falconet.kfilter import FilterPlan

if TYPE_CHECKING:
    from falconet.app.engine import App


def enabled(app: App) -> bool:
    """``collector.kernel_filter`` (``plugins.ebpf.kernel_filter`` overrides it), default on."""
    data = app.config.data
    value = (data.get("collector") or {}).get("kernel_filter", True)
    ebpf = ((data.get("plugins") or {}).get("ebpf") or {})
    if isinstance(ebpf, dict) and "kernel_filter" in ebpf:
        value = ebpf["kernel_filter"]
    return value is not False


def unfiltered_event_types(app: App) -> dict[str, str]:
    """Event type -> the plugin that needs it whole (``falconet_unfiltered_event_types``)."""
    h = app.host
    out: dict[str, str] = {}
    for name, types in h.call(h.hook.falconet_unfiltered_event_types, engine=app.ctx):
        for t in types or ():
            out.setdefault(str(t), name)
    return out


def kernel_filter_plan(app: App, ruleset: Any = None, *, force: bool = False) -> FilterPlan | None:
    """The plan for ``ruleset`` (default: the loaded one); ``None`` when the filter is off in
    the configuration (``force``: derive it anyway, for ``replay --kernel-filter``)."""
    if not force and not enabled(app):
        return None
    from falconet.rules.kfilter import derive  # noqa: PLC0415 - rules load first anyway

    rs = ruleset if ruleset is not None else app.ruleset
    return derive(rs, unfiltered_event_types(app))


def update_kernel_filter(app: App, ruleset: Any) -> None:
    """After a rules reload: give the running source the new rules' plan (before the new
    rules run), or say that the running filter still follows the old rules."""
    src = app.running_source
    if src is None or app.kernel_filter is None:
        return
    plan = kernel_filter_plan(app, ruleset)
    if plan == app.kernel_filter:
        return
    setter = getattr(src, "set_kernel_filter", None)
    if setter is not None:
        setter(plan)
        app.kernel_filter = plan
    else:
        print("falconet: warning: the reloaded rules need a different kernel filter than the "
              "running collector applies (restart falconet to apply it)", file=sys.stderr,
              flush=True)
