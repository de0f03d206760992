"""`python -m generator list|render ...`: the template's answer matrix and renders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .matrix import by_id, combinations, questions
from .render import render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generator",
        description="List and render the combinations of the Copier template.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the questions and every combination id")
    render_cmd = commands.add_parser("render", help="render combinations")
    render_cmd.add_argument("ids", nargs="*", metavar="ID", help="combination ids")
    render_cmd.add_argument("--all", action="store_true", help="every combination")
    render_cmd.add_argument(
        "--output", type=Path, required=True, help="directory; one subdirectory per id"
    )
    render_cmd.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another answer, e.g. package_name=my_model",
    )
    args = parser.parse_args(argv)

    if args.command == "list":
        for q in questions():
            print(f"{q.name}: {q.help}")
            for label, value in zip(q.labels, q.values, strict=True):
                shown = str(value).lower() if isinstance(value, bool) else value
                print(f"  {shown:<12} {label}")
        print()
        for combination in combinations():
            print(combination.id)
        return 0

    if not args.all and not args.ids:
        parser.error("render: give combination ids or --all")
    extra = {}
    for item in args.data:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--data {item!r}: expected NAME=VALUE")
        extra[name] = value
    try:
        chosen = combinations() if args.all else [by_id(i) for i in args.ids]
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    for combination in chosen:
        dst = args.output / combination.id
        render({**combination.data, **extra}, dst)
        print(dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
