"""The top-level CLI: help, version, unknown commands -- in-process through main(argv)."""
import subprocess
import sys

from pmgaft.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_suggests(capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err.lower()


def test_every_command_module_has_the_contract():
    import importlib

    for name, (module, _) in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "pmgaft", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("pmgaft ")
