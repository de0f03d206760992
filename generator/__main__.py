"""`python -m generator list|render|diff ...`: the template's answer matrix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .matrix import by_id, combinations, questions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m generator",
        description="List, render and compare the combinations of the Copier template.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the questions, their answers, and the matrix")
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
    diff_cmd = commands.add_parser(
        "diff", help="the unified diff between two rendered combinations"
    )
    diff_cmd.add_argument("a", metavar="A", help="combination id")
    diff_cmd.add_argument("b", metavar="B", help="combination id")
    diff_cmd.add_argument("-U", "--context", type=int, default=3, help="context lines")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            print_list()
        elif args.command == "diff":
            from .diff import rendered_diff

            sys.stdout.writelines(
                rendered_diff(by_id(args.a), by_id(args.b), args.context)
            )
        else:
            return render_command(parser, args)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    return 0


def print_list() -> None:
    qs = questions()
    for q in qs:
        print(f"{q.name}: {q.help}")
        for label, value in zip(q.labels, q.values, strict=True):
            print(f"  {_show(value):<12} {label}")
        print()
    header = ["id", *(q.name for q in qs)]
    rows = [[c.id, *(_show(v) for _, v in c.answers)] for c in combinations()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def render_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .render import render

    if not args.all and not args.ids:
        parser.error("render: give combination ids or --all")
    extra = {}
    for item in args.data:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--data {item!r}: expected NAME=VALUE")
        extra[name] = value
    chosen = combinations() if args.all else [by_id(i) for i in args.ids]
    for combination in chosen:
        dst = args.output / combination.id
        render({**combination.data, **extra}, dst)
        print(dst)
    return 0


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # e.g. `python -m generator diff A B | head`
        sys.stderr.close()
        raise SystemExit(0) from None
