"""The torchvision shim: registers the nms/qnms schemas only when torchvision's own extension cannot load."""
import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_shim_makes_torchvision_open_clip_timm_importable():
    out = _run("""
        import pmgaft
        from pmgaft import _compat
        import torchvision, open_clip, timm
        from torchvision import transforms
        print(_compat.applied, torchvision.__version__ != "")
    """)
    # On this CPU machine PyPI's CUDA torchvision cannot load its extension, so the shim must have applied;
    # on a machine where it loads, `applied` is False -- both are fine, importing must work either way.
    assert out.split()[1] == "True"


def test_shim_changes_nothing_where_torchvision_loads():
    # Simulate a working extension: the operators exist (with kernels) before torchvision is imported.
    out = _run("""
        import torch
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
        lib.impl("nms", lambda d, s, t: torch.arange(d.shape[0]), "CPU")
        import pmgaft
        from pmgaft import _compat
        import torchvision
        # the shim did not register anything of its own, and the pre-existing kernel still answers
        print(_compat.applied, _compat._library is None,
              torch.ops.torchvision.nms(torch.zeros(3, 4), torch.zeros(3), 0.5).tolist())
    """)
    assert out == "False True [0, 1, 2]"


def test_shim_applies_when_extension_is_missing():
    out = _run("""
        import torch
        try:
            import torchvision  # noqa: F401
            print("extension-loads")
        except RuntimeError as e:
            assert "torchvision::nms does not exist" in str(e)
            import sys
            for m in [m for m in sys.modules if m.startswith("torchvision")]:
                del sys.modules[m]
            import pmgaft
            from pmgaft import _compat
            import torchvision
            print("shimmed", _compat.applied)
    """)
    assert out in ("extension-loads", "shimmed True")
