"""``pmgaft export``: a run or checkpoint as open_clip's hub folder with a model card; ``--push`` uploads it.

    pmgaft export runs/pmg_aft --out exports/pmg_aft-b32                 # then: --model local-dir:exports/pmg_aft-b32
    pmgaft export runs/pmg_aft --out exports/pmg_aft-b32 --push me/pmg_aft-vit-b-32   # token: HF_TOKEN
    pmgaft export runs/pmg_aft --out exports/pmg_aft-b32 --push me/pmg_aft-vit-b-32 --dry-run

The card reports the result cards under ``--results`` whose model is these weights (evaluate first:
``pmgaft eval --checkpoint runs/pmg_aft/best.safetensors``). Nothing needs the network but ``--push``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pmgaft.export.folder import Export, check_out, export_folder
from pmgaft.export.push import check_repo_id, hub_token, push_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT",
                        help="a run directory (its best.safetensors, else last.safetensors, and its config.yaml) or "
                             "a weights file of any layout pmgaft reads")
    parser.add_argument("--out", required=True, type=Path,
                        help="the hub folder to write (absent or empty; --force replaces it)")
    parser.add_argument("--model", help="open_clip architecture of a file that does not record it (as for eval)")
    parser.add_argument("--pretrained", help="base weights (tag or file) whose text tower an image-tower-only "
                                             "checkpoint gets (FARE, TeCoA/PMG-AFT/TGA-ZSR releases)")
    parser.add_argument("--quick-gelu", action=argparse.BooleanOptionalAction, default=None,
                        help="the activation the weights were trained with, for a file that cannot tell (QuickGELU "
                             "for OpenAI-lineage weights); default: what the weights record (as for eval)")
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="results directory whose cards of these weights the model card reports "
                             "(default: ./results)")
    parser.add_argument("--name", help="the model's name in the card (default: the --push repo's name, else the "
                                       "--out folder's)")
    parser.add_argument("--license", default="mit", help="license in the card's front matter (default: mit)")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists and is not empty")
    parser.add_argument("--push", metavar="ORG/NAME",
                        help="upload the folder to this Hugging Face model repo (created if missing; token from "
                             "HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="create the --push repo as private")
    parser.add_argument("--dry-run", action="store_true",
                        help="write nothing and upload nothing: list the files that would be written and uploaded")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a checkpoint that needs more than torch.load(weights_only=True): it can execute "
                             "code")


def _listing(done: Export) -> str:
    return "\n".join(f"  {name:<30} {size:>14,} bytes" for name, size in done.files())


def run(args: argparse.Namespace) -> int:
    repo = check_repo_id(args.push) if args.push else None
    token = hub_token() if repo and not args.dry_run else None  # refused before any work
    check_out(args.out, args.force)
    options = dict(model=args.model, text_pretrained=args.pretrained, quick_gelu=args.quick_gelu,
                   results=args.results, name=args.name, hub_id=repo, license=args.license,
                   trust_checkpoint=args.trust_checkpoint)
    if args.dry_run:
        with tempfile.TemporaryDirectory() as tmp:
            done = export_folder(args.checkpoint, Path(tmp) / args.out.name, **options)
            print(f"pmgaft export --dry-run: would write {args.out}" + (f" and upload it to {repo}" if repo else "")
                  + f" ({done.n_results} result card(s) of these weights in {args.results}):\n" + _listing(done))
        return 0
    done = export_folder(args.checkpoint, args.out, force=args.force, **options)
    print(f"pmgaft export: wrote {done.folder} ({done.n_results} result card(s) of these weights in "
          f"{args.results}):\n{_listing(done)}\nload it with open_clip.create_model_from_pretrained"
          f"('local-dir:{done.folder}') or pmgaft eval --model local-dir:{done.folder}")
    if repo:
        url = push_folder(done.folder, repo, token=token, private=args.private)
        print(f"pmgaft export: uploaded to https://huggingface.co/{repo} ({url}); load it as hf-hub:{repo}")
    return 0
