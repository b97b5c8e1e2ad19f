"""LPIPS mechanics with explicitly random weights (real ones cannot be downloaded here), and the
weight loading rules: torchvision's checkpoint layout, the lpips package's heads, clear errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import torch
from torch import nn

from magcache_videosys.metrics import lpips as lp
from magcache_videosys.metrics.errors import MetricsError

# torchvision's alexnet().features state-dict keys: convolutions at 0, 3, 6, 8, 10
TORCHVISION_FEATURE_KEYS = [f"{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")]


def random_states(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Explicitly random backbone and heads, in the files' own key layouts."""
    torch.manual_seed(seed)
    backbone = lp.alexnet_features().state_dict()
    heads = {
        f"lin{k}.model.1.weight": nn.Conv2d(c, 1, 1, bias=False).weight.detach().abs()
        for k, c in enumerate(lp.TAP_CHANNELS)
    }
    return backbone, heads


@pytest.fixture(scope="module")
def model() -> lp.LPIPSAlex:
    return lp.LPIPSAlex(*random_states())


def frames(seed: int, count: int = 3, height: int = 64, width: int = 80) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, height, width, 3), dtype=torch.uint8, generator=generator)


def test_feature_stack_has_torchvision_keys():
    assert list(lp.alexnet_features().state_dict()) == TORCHVISION_FEATURE_KEYS


def test_identical_frames_score_zero(model):
    a = frames(1)
    assert model(a, a.clone()).tolist() == [0.0, 0.0, 0.0]


def test_distance_is_positive_and_symmetric(model):
    a, b = frames(1), frames(2)
    forward, backward = model(a, b), model(b, a)
    assert (forward > 0).all()
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-7)


def test_batching_equals_one_frame_at_a_time(model):
    a, b = frames(3, count=4), frames(4, count=4)
    single = torch.cat([model(a[i : i + 1], b[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(model(a, b), single, rtol=1e-5, atol=1e-7)


def test_uint8_and_unit_float_inputs_agree(model):
    a, b = frames(5), frames(6)
    torch.testing.assert_close(model(a, b), model(a.float() / 255, b.float() / 255), rtol=1e-5, atol=1e-7)


def test_weights_are_used(model):
    a, b = frames(7), frames(8)
    other = lp.LPIPSAlex(*random_states(seed=1))
    assert not torch.allclose(model(a, b), other(a, b))


def test_torchvision_checkpoint_and_lpips_heads_files_load(tmp_path):
    backbone, heads = random_states()
    checkpoint = {f"features.{k}": v for k, v in backbone.items()}
    checkpoint["classifier.1.weight"] = torch.zeros(8, 8)  # the full torchvision file has classifier weights too
    torch.save(checkpoint, tmp_path / lp.ALEXNET_FILE)
    torch.save(heads, tmp_path / "alex.pth")
    loaded = lp.load_lpips(tmp_path / lp.ALEXNET_FILE, tmp_path / "alex.pth")
    reference = lp.LPIPSAlex(backbone, heads)
    a, b = frames(9), frames(10)
    assert torch.equal(loaded(a, b), reference(a, b))
    assert loaded.weight_files == (tmp_path / lp.ALEXNET_FILE, tmp_path / "alex.pth")


def test_missing_backbone_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / lp.ALEXNET_FILE
    assert lp.default_backbone_path() == expected
    with pytest.raises(MetricsError) as error:
        lp.load_lpips()
    message = str(error.value)
    assert lp.ALEXNET_URL in message and str(expected) in message and "--lpips-weights" in message


def test_missing_heads_says_what_to_get(tmp_path):
    backbone, _ = random_states()
    torch.save(backbone, tmp_path / "alexnet.pth")
    with pytest.raises(MetricsError, match=r"pip install --no-deps lpips.*--lpips-heads"):
        lp.load_lpips(tmp_path / "alexnet.pth", tmp_path / "absent.pth")


def test_heads_default_to_the_installed_lpips_package_without_importing_it(monkeypatch, tmp_path):
    package = tmp_path / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert lp.default_heads_path() == package / "weights" / "v0.1" / "alex.pth"


def test_mismatched_weights_are_rejected(tmp_path):
    backbone, heads = random_states()
    backbone["0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(MetricsError, match="do not fit"):
        lp.LPIPSAlex(backbone, heads)
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(MetricsError, match=r"cannot load LPIPS weights from .*bad\.pth"):
        lp.load_lpips(tmp_path / "bad.pth", tmp_path / "bad.pth")


CROSS_CHECK = r"""
import sys, types, torch
# torchvision's compiled ops do not load with the CPU torch wheel; this stub lets its Python models import
sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
import lpips
from magcache_videosys.metrics import lpips as lp
torch.manual_seed(0)
theirs = lpips.LPIPS(net="alex", spatial=True, pnet_rand=True, verbose=False)  # random AlexNet, real v0.1 heads
backbone = {f"{name.split('.')[1]}.{name.split('.')[2]}": p.detach() for name, p in theirs.net.named_parameters()}
ours = lp.LPIPSAlex(backbone, lp.load_heads_state()[0])
a = torch.randint(0, 256, (3, 70, 90, 3), dtype=torch.uint8)
b = (a.float() + 40 * torch.randn(a.shape)).clamp(0, 255).to(torch.uint8)
to_input = lambda x: (x.permute(0, 3, 1, 2).float() / 255.0) * 2 - 1
with torch.no_grad():
    expected = torch.stack([theirs(to_input(a[i:i+1]), to_input(b[i:i+1])).mean() for i in range(3)])
print(float((ours(a, b) - expected.double()).abs().max()), float(expected.min()))
"""


def test_equals_the_lpips_package_where_it_can_run():
    """The reference scores with lpips.LPIPS(net="alex", spatial=True) and averages the map; same
    backbone weights and the package's own heads must give the same numbers. Needs the ``lpips``
    package and torchvision (not part of the test environment); runs in a subprocess because of
    the torchvision stub."""
    if importlib.util.find_spec("lpips") is None or importlib.util.find_spec("torchvision") is None:
        pytest.skip("needs the lpips package and torchvision")
    run = subprocess.run([sys.executable, "-c", CROSS_CHECK], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    difference, smallest = map(float, run.stdout.split())
    assert smallest > 1e-3 and difference < 1e-6
