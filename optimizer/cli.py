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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faro", description="SLO-aware cluster-wide autoscaler for ML inference")
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
