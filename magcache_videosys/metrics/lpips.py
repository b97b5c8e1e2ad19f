"""LPIPS (AlexNet backbone, version 0.1 linear heads) without torchvision or the ``lpips`` package.

The reference scores with ``lpips.LPIPS(net="alex", spatial=True)`` and averages the returned map:
each layer's distance map is upsampled (bilinear) to the frame size, the maps are summed, and the
result is averaged. This module computes exactly that. The AlexNet feature stack is rebuilt here
with torchvision's layer indices, so torchvision's checkpoint loads as it is; the weights are never
downloaded and never replaced by random ones: a missing file is an error that says what to fetch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MetricsError

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
HEADS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"

# ReLU outputs compared by LPIPS (indices into the feature stack) and their channel counts
TAPS = (1, 4, 7, 9, 11)
TAP_CHANNELS = (64, 192, 384, 256, 256)
# LPIPS v0.1 input scaling (its ScalingLayer), applied to frames already mapped to [-1, 1]
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10
MIN_SIZE = 31  # smallest frame side AlexNet carries to its last tapped layer


def alexnet_features() -> nn.Sequential:
    """AlexNet's convolutional stack, layer for layer as torchvision's ``alexnet().features``."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


class LPIPSAlex(nn.Module):
    """LPIPS distance per frame pair, from explicit backbone and head weights.

    ``backbone_state`` uses the keys of ``alexnet_features().state_dict()`` ("0.weight", ...);
    ``heads_state`` the keys of the ``lpips`` package's file ("lin0.model.1.weight", ...).
    """

    def __init__(self, backbone_state: Mapping[str, torch.Tensor], heads_state: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        # the final max-pool feeds no tap; leaving it out changes no value
        self.features = alexnet_features()[: TAPS[-1] + 1]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in TAP_CHANNELS)
        try:
            self.features.load_state_dict(dict(backbone_state))
            self.heads.load_state_dict({f"{k}.weight": heads_state[f"lin{k}.model.1.weight"] for k in range(len(TAPS))})
        except (KeyError, RuntimeError) as exc:
            raise MetricsError(f"LPIPS weights do not fit AlexNet + v0.1 heads: {exc}") from exc
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.weight_files: tuple[Path, Path] | None = None  # set by load_lpips, reported with results
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAPS:
                outputs.append(x)
        return outputs

    @torch.no_grad()
    def forward(self, reference: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """Distances of frame pairs ``(N, H, W, 3)``, uint8 or float in ``[0, 1]``; float64 ``(N,)``."""
        if reference.shape != generated.shape:
            raise ValueError(f"frame shapes differ: {tuple(reference.shape)} vs {tuple(generated.shape)}")
        n, height, width = reference.shape[:3]
        if height < MIN_SIZE or width < MIN_SIZE:
            raise ValueError(f"LPIPS needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {width}x{height}")
        frames = torch.cat([reference, generated]).permute(0, 3, 1, 2).float()
        if reference.dtype == torch.uint8:
            frames = frames / 255.0
        x = ((frames * 2 - 1) - self.shift) / self.scale
        total = torch.zeros((n, 1, height, width), dtype=torch.float32, device=x.device)
        for head, feature in zip(self.heads, self._taps(x.contiguous(memory_format=torch.channels_last))):
            feature = feature / (feature.square().sum(1, keepdim=True).sqrt() + _EPS)
            distance = head((feature[:n] - feature[n:]).square())
            total += F.interpolate(distance, size=(height, width), mode="bilinear", align_corners=False)
        return total.mean((1, 2, 3), dtype=torch.float64)


def default_backbone_path() -> Path:
    """Where torchvision caches AlexNet: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def default_heads_path() -> Path | None:
    """The heads file shipped inside an installed ``lpips`` package (found without importing it)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"


def _load(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise MetricsError(f"cannot load LPIPS weights from {path}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise MetricsError(f"{path} holds no state dict")
    return dict(state)


def load_backbone_state(path: str | Path | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """AlexNet feature weights from ``path`` or torch's hub cache; torchvision's full checkpoint is fine."""
    path = Path(path) if path is not None else default_backbone_path()
    if not path.is_file():
        raise MetricsError(
            f"LPIPS needs AlexNet's ImageNet weights, not found at {path}. Download {ALEXNET_URL} "
            f"to {default_backbone_path()} (or anywhere, then pass --lpips-weights PATH), "
            "or leave LPIPS out with --metrics psnr,ssim"
        )
    state = _load(path)
    if any(key.startswith("features.") for key in state):
        state = {key[len("features.") :]: value for key, value in state.items() if key.startswith("features.")}
    return state, path


def load_heads_state(path: str | Path | None = None) -> tuple[dict[str, torch.Tensor], Path]:
    """LPIPS v0.1 linear heads from ``path`` or the installed ``lpips`` package."""
    resolved = Path(path) if path is not None else default_heads_path()
    if resolved is None or not resolved.is_file():
        where = f"not found at {resolved}" if resolved is not None else "the lpips package is not installed"
        raise MetricsError(
            f"LPIPS needs its v0.1 linear heads for AlexNet ({where}). Run `pip install --no-deps lpips`, "
            f"or download {HEADS_URL} and pass --lpips-heads PATH"
        )
    return _load(resolved), resolved


def load_lpips(
    backbone_path: str | Path | None = None,
    heads_path: str | Path | None = None,
    device: torch.device | str = "cpu",
) -> LPIPSAlex:
    """The LPIPS model with real weights, or a MetricsError saying what to download and where."""
    backbone, backbone_file = load_backbone_state(backbone_path)
    heads, heads_file = load_heads_state(heads_path)
    model = LPIPSAlex(backbone, heads).to(device)
    model.weight_files = (backbone_file, heads_file)
    return model
