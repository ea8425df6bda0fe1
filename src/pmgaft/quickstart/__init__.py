"""``pmgaft quickstart``: the whole PMG-AFT story on real images, on a laptop CPU, in minutes."""
from pmgaft.quickstart.command import add_arguments, run

__all__ = ["add_arguments", "run"]
