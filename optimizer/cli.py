"""The ``faro`` console script: one subcommand per module, registered in ``COMMANDS``.

Each module has ``add_arguments(parser)`` and ``run(args) -> int`` and imports its heavy
dependencies inside ``run`` so ``faro --help`` stays fast. Errors a user can fix
(``InvalidInputError``) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from faro.optimizer.errors import InvalidInputError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "plan": ("faro.optimizer.commands.plan", "solve one allocation problem file and print the plan"),
    "simulate": ("faro.optimizer.commands.simulate", "replay traces through a simulated cluster under each policy"),
    "forecast": ("faro.optimizer.commands.forecast", "backtest load forecasters on a trace"),
    "optimizer": ("faro.optimizer.commands.optimizer", "run the live optimizer (control loop + plan gRPC API)"),
    "adapter": ("faro.adapter.cli", "serve plans as external.metrics.k8s.io and a KEDA external scaler"),
    "status": ("faro.optimizer.commands.status", "show the live optimizer's plan (like kubectl get hpa) or explain "
               "one Deployment's replica count"),
}


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, once: appended unless the text already says what the
    default is (``default`` in it) or there is none to show (None, "", False, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or "default" in text.lower() or not action.option_strings:
            return action.help
        default = action.default
        if default is None or default is argparse.SUPPRESS or default == "" or isinstance(default, bool):
            return action.help
        if action.nargs == 0:  # store_true/const flags
            return action.help
        shown = (f"{default:g}" if isinstance(default, float) else str(default)).replace("%", "%%")
        if text.endswith(")") and text.rfind("(env ") > text.rfind(")", 0, -1):  # "… (env FARO_X)"
            return f"{text[:-1]}; default: {shown})"
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    """``HelpFormatter`` for a parser and every sub-parser below it (argparse does not pass it down)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _use_formatter(child)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("faro-k8s")
    except PackageNotFoundError:  # run from a source tree without an install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faro", description="SLO-aware cluster-wide autoscaler for ML inference")
    parser.add_argument("--version", action="version", version=f"faro {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("faro"):
                continue  # a component not built yet
            raise
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    _use_formatter(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except InvalidInputError as exc:
        print(f"faro {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
