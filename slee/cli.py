"""The `slee` command line (placeholder until the management issue fills it in)."""

from __future__ import annotations

import argparse
import sys

from slee import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slee", description="JAIN SLEE style container for SIP services")
    parser.add_argument("--version", action="version", version=f"slee {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
