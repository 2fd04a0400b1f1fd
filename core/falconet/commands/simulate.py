"""`falconet simulate` (not implemented yet)."""

from __future__ import annotations

import argparse
import sys

HELP = "simulate (not implemented yet)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    print("falconet simulate: not implemented yet", file=sys.stderr)
    return 2
