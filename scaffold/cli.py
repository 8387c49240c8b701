"""The `scaffold` command line."""

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from scaffold import __version__
from scaffold import questions as qs
from scaffold.answers import AnswerError, DoesNotFit, collect, inapplicable
from scaffold.render import (
    RenderError,
    TargetExistsError,
    refuse_non_empty,
    refuse_unwritable,
    render_project,
)
from scaffold.source import ENV_SOURCE as SCAFFOLD_TEMPLATE
from scaffold.template_cache import TemplateCacheError

EXIT_CONFLICTS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ENV_DEBUG = "SCAFFOLD_DEBUG"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where help is, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get(ENV_DEBUG))
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\nAborted; nothing was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DoesNotFit as error:
        print(f"scaffold: error: {error.refusal()}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        return EXIT_USAGE
    except (AnswerError, TargetExistsError, TemplateCacheError, RenderError) as error:
        if debug:
            traceback.print_exc()
        print(f"scaffold: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # a bug in scaffold or its template: one paragraph, not a trace
        if debug:
            raise
        print(
            f"scaffold: error: {type(error).__name__}: {error}. This is a bug in scaffold, "
            f"not in your answers; rerun with --debug (or {ENV_DEBUG}=1) for the traceback "
            "and report it.",
            file=sys.stderr,
        )
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="scaffold", description="Generate a minimal, correct ML training project.")
    parser.add_argument("--version", action="version", version=f"scaffold {__version__}")
    # On the top-level parser and on each command, so it can go anywhere on the line.
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show the traceback of an error (also: {ENV_DEBUG}=1)",
    )
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    new = commands.add_parser(
        "new",
        parents=[debug],
        help="create a project",
        description="Create a training project in NAME/. In a terminal a wizard asks "
        "what flags leave out; with --yes or without a terminal nothing is asked.",
    )
    new.add_argument("name", metavar="NAME", help="directory to create; its name names the project")
    for q in qs.questions():
        if q.name == "project_name":
            continue
        new.add_argument(
            q.flag,
            dest=q.name,
            type=int if q.type == "int" else str,
            choices=q.values or None,
            help=qs.render(q.help, {}),
        )
    new.add_argument(
        "-y", "--yes", action="store_true", help="never prompt: use defaults for what is missing"
    )
    new.set_defaults(run=run_new)

    update = commands.add_parser(
        "update",
        parents=[debug],
        help="pull template fixes (or changed answers) into a project",
        description="Update a project made by `scaffold new` to a newer template version "
        "with `copier update` (a three-way merge that keeps your edits), optionally "
        "changing answers, e.g. --hardware multi-gpu. The project must be a clean git tree.",
    )
    update.add_argument(
        "path", metavar="PATH", nargs="?", default=".", help="the project (default: .)"
    )
    for q in qs.questions():
        update.add_argument(
            q.flag,
            dest=q.name,
            type=int if q.type == "int" else str,
            choices=q.values or None,
            help=f"change the answer: {qs.render(q.help, {})}",
        )
    update.add_argument(
        "--conflict",
        choices=["inline", "rej"],
        default="inline",
        help="how to leave what cannot merge: conflict markers in the file (default) "
        "or a .rej file beside it",
    )
    update.add_argument(
        "-y",
        "--yes",
        "--defaults",
        dest="yes",
        action="store_true",
        help="never prompt: keep recorded answers except those given as flags",
    )
    update.add_argument(
        "--vcs-ref",
        metavar="REF",
        help="template version to update to (default: this scaffold's; with --template, "
        "the latest tag)",
    )
    update.add_argument(
        "--skip-answered", action="store_true", help="interactive: ask only new questions"
    )
    update.add_argument(
        "--template",
        metavar="SRC",
        default=os.environ.get(SCAFFOLD_TEMPLATE) or None,
        help="template git URL or path, instead of the one the project records "
        f"(default: ${SCAFFOLD_TEMPLATE} if set)",
    )
    update.set_defaults(run=run_update)

    listing = commands.add_parser(
        "list",
        help="show every task x hardware combination and its scales",
        description="Print the task x hardware combinations and the scales each accepts, "
        "as copier.yml defines them.",
    )
    listing.set_defaults(run=run_list)

    from scaffold.check.command import add_parser as add_check_parser

    add_check_parser(commands)
    return parser


def run_new(args: argparse.Namespace) -> int:
    target = Path(args.name)
    given: dict[str, Any] = {q.name: getattr(args, q.name, None) for q in qs.questions()}
    given["project_name"] = target.name
    interactive = not args.yes and sys.stdin.isatty() and sys.stdout.isatty()
    # Before asking anything: the user's files are never touched, and no answers are lost.
    refuse_non_empty(target)
    refuse_unwritable(target)

    if interactive:
        from scaffold import wizard  # questionary is only needed in a terminal

        answers = collect(given, ask=wizard.ask)
    else:
        answers = collect(given)
    unused = inapplicable(given, answers)
    if unused:
        raise AnswerError(unused)
    if interactive and not wizard.confirm(answers, str(target)):
        print("Nothing was written.")
        return 0

    print(f"Rendering {answers['task']} for {answers['hardware']} ({answers['scale']}) ...")
    files = render_project(answers, target)
    print(f"Created {target}/ ({len(files)} files). Next:")
    print(f"  cd {target} && pip install -r requirements.txt && pytest -q")
    return 0


def run_update(args: argparse.Namespace) -> int:
    from scaffold import update

    given = {q.name: getattr(args, q.name, None) for q in qs.questions()}
    interactive = not args.yes and sys.stdin.isatty() and sys.stdout.isatty()
    project = Path(args.path)
    try:
        result = update.update_project(
            project,
            given,
            interactive=interactive,
            conflict=args.conflict,
            vcs_ref=args.vcs_ref,
            skip_answered=args.skip_answered,
            template=args.template,
        )
    except update.UpdateError as error:
        print(f"scaffold: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nAborted; see `git status` in {project}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(update.summary(project.absolute(), result))
    # Conflicts need a human: fail scripts and CI rather than let them commit markers.
    return EXIT_CONFLICTS if result.conflicts else 0


def run_list(args: argparse.Namespace) -> int:
    from scaffold.catalog import table

    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
