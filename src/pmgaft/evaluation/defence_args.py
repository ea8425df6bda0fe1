"""Command-line flags of a test-time defence (``--defence``, ``--ttc-*``, ``--eot-samples``), shared by ``pmgaft
eval`` and ``pmgaft quickstart``. eps-like settings are given in 1/255 units and converted here, once."""
from __future__ import annotations

import argparse
import math

from pmgaft.defences import DEFAULTS, DEFENCES
from pmgaft.errors import PmgaftError
from pmgaft.evaluation.defended import DefenceConfig

# setting -> (flag, in 1/255 units)
FLAGS = {"eps": ("--ttc-eps", True), "step_size": ("--ttc-step-size", True), "steps": ("--ttc-steps", False),
         "beta": ("--ttc-beta", False), "tau_thres": ("--ttc-tau", False)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = parser.add_argument_group("test-time defence (docs/defences.md)")
    d.add_argument("--defence", default="none", choices=["none", *DEFENCES],
                   help="evaluate the models also under a test-time defence, non-adaptive (the attack sees the "
                        "undefended model, as the defence's paper) and adaptive (the attack sees the defence): " +
                        "; ".join(f"{n} = {s.description}" for n, s in DEFENCES.items()) + " (default: none)")
    d.add_argument("--ttc-eps", type=float, metavar="K",
                   help=f"TTC's L-inf budget in 1/255 units (default: {DEFAULTS['eps'] * 255:g})")
    d.add_argument("--ttc-step-size", type=float, metavar="K",
                   help=f"TTC's step size in 1/255 units (default: {DEFAULTS['step_size'] * 255:g})")
    d.add_argument("--ttc-steps", type=int, metavar="N",
                   help=f"TTC's counterattack steps, 0 = random noise only (default: {DEFAULTS['steps']})")
    d.add_argument("--ttc-beta", type=float, metavar="B",
                   help=f"TTC's step weighting, w_k proportional to exp(B k) (default: {DEFAULTS['beta']:g})")
    d.add_argument("--ttc-tau", type=float, metavar="T",
                   help=f"TTC's tau threshold: below it an input counts as adversarial and is counterattacked "
                        f"(default: {DEFAULTS['tau_thres']:g})")
    d.add_argument("--ttc-reference", metavar="TAG|PATH",
                   help="original CLIP weights for the tau of fine-tuned checkpoints (default: --pretrained, else "
                        "the starting weights a pmgaft checkpoint records)")
    d.add_argument("--eot-samples", type=int, default=4, metavar="N",
                   help="noise draws averaged per step of each adaptive attack (EOT; default: %(default)s)")


def resolve_defence(args: argparse.Namespace) -> DefenceConfig | None:
    """The defence the flags ask for (None for ``--defence none``), checked; before any work."""
    given = {key: getattr(args, flag[2:].replace("-", "_")) for key, (flag, _) in FLAGS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    if args.defence == "none":
        stray = [FLAGS[k][0] for k in given] + (["--ttc-reference"] if args.ttc_reference else [])
        if stray:
            raise PmgaftError(f"{', '.join(stray)} set{'s' if len(stray) == 1 else ''} a test-time defence: add "
                              f"--defence {' or '.join(DEFENCES)}.")
        return None
    spec = DEFENCES[args.defence]
    foreign = [FLAGS[k][0] for k in given if k not in spec.defaults]
    if foreign:
        raise PmgaftError(f"{', '.join(foreign)} do{'es' if len(foreign) == 1 else ''} not apply to --defence "
                          f"{args.defence} ({spec.description}).")
    for key, value in given.items():
        flag, in_255 = FLAGS[key]
        if in_255 and not (0 <= value <= 255):  # also NaN
            raise PmgaftError(f"{flag} is in 1/255 units and must be in [0, 255], got {value}.")
        if key == "beta" and not math.isfinite(value):
            raise PmgaftError(f"{flag} must be a finite number, got {value}.")
        if key == "tau_thres" and not 0 < value < math.inf:
            raise PmgaftError(f"{flag} must be a positive finite number, got {value}.")
        if key == "steps" and value < 0:
            raise PmgaftError(f"{flag} must be >= 0 (0 = random noise only), got {value}.")
    settings = {k: v / 255 if FLAGS[k][1] else v for k, v in given.items()}
    return DefenceConfig.build(args.defence, eot_samples=args.eot_samples, reference=args.ttc_reference, **settings)
