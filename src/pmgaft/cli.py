"""``pmgaft`` command line: one sub-command per module, found through a registry.

Each command module defines ``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily
so ``pmgaft --help`` stays fast and the library never imports the CLI.

Exit statuses shared by every command: 0 success, 2 bad input (a one-paragraph message, no traceback), 130 an
interrupt the command did not handle itself. ``pmgaft train`` adds 75: stopped on SIGTERM/SIGINT after writing
a checkpoint (see ``pmgaft train --help``).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from pmgaft.errors import PmgaftError

# how to continue each command after an interrupt (KeyboardInterrupt below)
RESUME_HINTS = {"train": "pmgaft train --out-dir RUN --resume", "eval": "the same command with --skip-existing",
                "reproduce": "the same command", "quickstart": "the same command"}

# CLI name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("pmgaft.training.cli", "fine-tune CLIP's image encoder (PMG-AFT or a baseline)"),
    "eval": ("pmgaft.evaluation.cli", "zero-shot clean/robust accuracy over models x datasets x attacks x eps"),
    "report": ("pmgaft.evaluation.report", "tables and plots from a results directory"),
    "published": ("pmgaft.evaluation.published_cli", "the papers' published numbers (what --compare puts beside yours)"),
    "datasets": ("pmgaft.data.cli", "list the registered datasets and whether they are present"),
    "reproduce": ("pmgaft.reproduce", "train + evaluate the paper's methods, paper-style table"),
    "quickstart": ("pmgaft.quickstart", "the whole PMG-AFT story on real images, on a CPU, in minutes"),
    "bench": ("pmgaft.bench.cli", "time training steps, attacks, inference and data loading (FLOPs, MFU, memory)"),
    "models": ("pmgaft.models.cli", "the public robust CLIP models by name (hub repo, training, reported numbers)"),
    "export": ("pmgaft.export.cli", "write a run or checkpoint as open_clip's hub folder with a model card (--push)"),
}


def build_parser() -> argparse.ArgumentParser:
    from pmgaft import __version__

    parser = argparse.ArgumentParser(
        prog="pmgaft",
        description="Zero-shot adversarial robustness of CLIP: PMG-AFT, its baselines, the 16-dataset evaluation.")
    parser.add_argument("--version", action="version", version=f"pmgaft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        build_parser().print_help()
        return 0
    if argv[0] == "--version":
        build_parser().parse_args(argv)
    name = argv[0]
    if name not in COMMANDS:
        from pmgaft.utils import did_you_mean

        print(f"pmgaft: unknown command {name!r}.{did_you_mean(name, COMMANDS)}", file=sys.stderr)
        return 2
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"pmgaft {name}", description=help_text)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(argv[1:])
    except SystemExit as exit_:  # argparse has printed the usage error (or --help): a status, not an exception
        return int(exit_.code or 0)
    try:
        return int(module.run(args) or 0)
    except PmgaftError as err:
        print(f"pmgaft {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = f"; continue with: {RESUME_HINTS[name]}" if name in RESUME_HINTS else ""
        print(f"pmgaft {name}: interrupted (finished results and checkpoints are kept{hint})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
