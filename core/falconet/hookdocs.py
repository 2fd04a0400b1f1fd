"""The hook reference of ``docs/plugins.md``, generated from :mod:`falconet.hookspecs` (the one
source of truth for hook documentation; a test fails when the doc is out of date)::

    python -m falconet.hookdocs --write docs/plugins.md    # regenerate
    python -m falconet.hookdocs --check docs/plugins.md    # exit 1 when out of date
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from falconet import hookspecs

BEGIN = ("<!-- hook reference: generated from falconet/hookspecs.py by "
         "`python -m falconet.hookdocs --write docs/plugins.md`; do not edit -->")
END = "<!-- end of the hook reference -->"


def hook_names() -> list[str]:
    """Every hookspec, in the order the module declares them."""
    return [name for name, fn in vars(hookspecs).items()
            if name.startswith("falconet_") and callable(fn)
            and hasattr(fn, "falconet_spec")]


def start_order() -> str:
    """The start-order paragraph of the hookspecs module docstring (written only there)."""
    doc = inspect.cleandoc(hookspecs.__doc__ or "")
    para = doc[doc.index("Start order"):].split("\n\n")[0]
    return para.replace(" (the one place it is written; ``falconet.app`` follows it)", "").strip()


def render() -> str:
    out = [BEGIN, "", start_order(), ""]
    for name in hook_names():
        fn = getattr(hookspecs, name)
        sig = inspect.signature(fn)
        params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
        out += [f"### `{name}`", "", "```python", f"def {name}({params}) -> {sig.return_annotation}",
                "```", "", inspect.cleandoc(fn.__doc__ or "").strip(), ""]
    out.append(END)
    return "\n".join(out)


def update(text: str) -> str:
    """``text`` with the block between the markers replaced by :func:`render`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the hook reference markers are missing ({BEGIN!r} ... {END!r})")
    return text[:start] + render() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("doc", type=Path)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the reference in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if the reference is stale")
    args = ap.parse_args(argv)
    text = args.doc.read_text(encoding="utf-8")
    new = update(text)
    if args.write:
        args.doc.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{args.doc}: the hook reference is out of date: run python -m falconet.hookdocs "
              f"--write {args.doc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
