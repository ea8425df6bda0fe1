"""The one exception type the CLI turns into a short message (no stack trace)."""
from __future__ import annotations


class PmgaftError(ValueError):
    """Bad input or a missing resource. The message names the problem and the fix."""
