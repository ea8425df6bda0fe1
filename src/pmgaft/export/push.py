"""Upload an exported hub folder to a Hugging Face model repo with huggingface_hub.

The token comes from the environment (``HF_TOKEN``) or ``hf auth login``'s stored token; without one the upload
is refused before any work. The repo is created when missing (``exist_ok``); the folder is uploaded in one
commit, replacing files of the same names (README.md included: it is the card pmgaft wrote).
"""
from __future__ import annotations

from pathlib import Path

from pmgaft.errors import PmgaftError


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the hub accepts it (a PmgaftError naming the problem otherwise)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1:
        raise PmgaftError(f"--push takes a repo id ORG/NAME (your user or organisation, then the model's name), "
                          f"got {repo_id!r}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PmgaftError(f"--push {repo_id}: not a valid Hugging Face repo id ({err}).") from None
    return repo_id


def hub_token() -> str:
    """The Hugging Face token of this environment, or a PmgaftError saying how to provide one."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PmgaftError("--push needs a Hugging Face token with write access: set HF_TOKEN (create one at "
                          "https://huggingface.co/settings/tokens) or run `hf auth login`; --dry-run shows what "
                          "would be uploaded without one.")
    return token


def push_folder(folder: Path, repo_id: str, *, token: str, private: bool = False,
                message: str = "Add model exported by pmgaft") -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model", commit_message=message)
    except OSError as err:  # HfHubHTTPError (refused, no write access) and connection errors
        raise PmgaftError(f"upload to {repo_id} failed: {' '.join(str(err).split())[:300]} (the folder is complete "
                          f"at {folder}: retry with `hf upload {repo_id} {folder}`).") from None
    return str(getattr(info, "commit_url", info))
