"""The public API of ``import accelstore``: its names, their lazy loading, the version, and the
published backbones' constructors."""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import accelstore

HEAVY = ("numba", "torch", "zarr", "xarray")


def modules_loaded_after(code: str) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter has imported after running ``code``."""
    check = f"{code}\nimport sys\nprint('loaded:' + ','.join(name for name in {HEAVY!r} if name in sys.modules))"
    finished = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=True)
    return [name for name in finished.stdout.rsplit("loaded:", 1)[1].strip().split(",") if name]


def test_import_accelstore_loads_no_heavy_dependency_until_a_name_is_used() -> None:
    assert modules_loaded_after("import accelstore; accelstore.__version__; dir(accelstore)") == []
    assert modules_loaded_after("import accelstore; accelstore.StoreError") == []
    assert "zarr" in modules_loaded_after("import accelstore; accelstore.open_store")


def test_the_command_line_starts_without_torch() -> None:
    for command in ("pretrain", "evaluate", "embed"):
        code = f"from accelstore.cli import main\ntry:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass"
        assert "torch" not in modules_loaded_after(code), command


def test_every_public_name_resolves_and_dir_lists_them() -> None:
    assert len(set(accelstore.__all__)) == len(accelstore.__all__)
    for name in accelstore.__all__:
        assert getattr(accelstore, name) is not None
    assert set(accelstore.__all__) <= set(dir(accelstore))
    assert accelstore.evaluate is importlib.import_module("accelstore.evaluation.evaluate").evaluate
    assert accelstore.synth is importlib.import_module("accelstore.synth")
    assert issubclass(accelstore.StoreDamageError, accelstore.StoreError) and issubclass(accelstore.InputError, accelstore.AccelstoreError)
    with pytest.raises(AttributeError, match="no attribute 'harnet7'"):
        accelstore.harnet7  # noqa: B018


def test_the_version_is_the_package_metadata() -> None:
    assert accelstore.__version__ == importlib.metadata.version("accelstore")


@pytest.mark.parametrize("build, samples, features", [
    (accelstore.harnet5, 150, 512),
    (accelstore.harnet10, 300, 1024),
    (accelstore.harnet30, 900, 1024),
])
def test_the_published_backbones_take_their_windows(build, samples: int, features: int) -> None:
    backbone = build()
    assert backbone.name == build.__name__
    with torch.no_grad():
        assert backbone.eval()(torch.randn(2, 3, samples)).shape == (2, features)


def trained_looking(backbone: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights and BatchNorm statistics unlike a fresh backbone's."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in backbone.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        backbone.train()(torch.randn(8, 3, 300))  # moves the running statistics
    return backbone.eval()


def test_pretrained_weights_load_and_give_the_same_outputs(tmp_path: Path) -> None:
    source = trained_looking(accelstore.harnet10(), seed=1)
    torch.save(source.state_dict(), tmp_path / "encoder.pt")
    windows = torch.randn(2, 3, 300)
    with torch.no_grad():
        expected = source(windows)
        assert not torch.equal(accelstore.harnet10().eval()(windows), expected)
        assert torch.equal(accelstore.harnet10(pretrained=tmp_path / "encoder.pt").eval()(windows), expected)
        assert torch.equal(accelstore.harnet10(str(tmp_path / "encoder.pt")).eval()(windows), expected)


def test_a_checkpoint_of_another_backbone_is_refused(tmp_path: Path) -> None:
    torch.save(accelstore.harnet5(width=0.125).state_dict(), tmp_path / "narrow_harnet5.pt")
    with pytest.raises(accelstore.CheckpointMismatchError, match="does not fit"):
        accelstore.harnet10(pretrained=tmp_path / "narrow_harnet5.pt", width=0.125)
    with pytest.raises(accelstore.CheckpointMismatchError, match="wrong shape"):
        accelstore.harnet5(pretrained=tmp_path / "narrow_harnet5.pt")
    assert accelstore.harnet5(pretrained=tmp_path / "narrow_harnet5.pt", width=0.125).feature_dim == 64
