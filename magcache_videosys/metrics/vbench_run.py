"""Run VBench's 16 standard dimensions on a folder of videos (a GPU job, VBench's own models).

Everything that can be checked before the GPU work starts is checked first: that the ``vbench``
package imports, that its model files are in its cache folder, and that the videos carry the
names VBench's standard mode looks for. VBench runs in local mode, so it reads models only from
that cache; ``allow_download`` lets it fetch the missing ones itself instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import torch

from .errors import MetricsError

# VBench's standard dimensions, in the reference runner's order
VBENCH_DIMENSIONS = (
    "subject_consistency",
    "imaging_quality",
    "background_consistency",
    "motion_smoothness",
    "overall_consistency",
    "human_action",
    "multiple_objects",
    "spatial_relationship",
    "object_class",
    "color",
    "aesthetic_quality",
    "appearance_style",
    "temporal_flickering",
    "scene",
    "temporal_style",
    "dynamic_degree",
)

_CLIP_B32 = (
    "clip_model/ViT-B-32.pt",
    "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
)
_GRIT = (
    "grit_model/grit_b_densecap_objectdet.pth",
    "https://datarelease.blob.core.windows.net/grit/models/grit_b_densecap_objectdet.pth",
)
_VICLIP = (
    "ViCLIP/ViClip-InternVid-10M-FLT.pth",
    "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth",
)
# Files each dimension reads from VBench's cache in local mode, with where VBench itself fetches
# them (vbench 0.1.5, vbench/utils.py init_submodules and vbench/aesthetic_quality.py).
MODEL_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "subject_consistency": (
        ("dino_model/facebookresearch_dino_main", "git clone https://github.com/facebookresearch/dino"),
        (
            "dino_model/dino_vitbase16_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
        ),
    ),
    "background_consistency": (_CLIP_B32,),
    "aesthetic_quality": (
        (
            "clip_model/ViT-L-14.pt",
            "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        ),
        (
            "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
            "https://github.com/LAION-AI/aesthetic-predictor/blob/main/sa_0_4_vit_l_14_linear.pth?raw=true",
        ),
    ),
    "imaging_quality": (
        (
            "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",
            "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth",
        ),
    ),
    "object_class": (_GRIT,),
    "multiple_objects": (_GRIT,),
    "color": (_GRIT,),
    "spatial_relationship": (_GRIT,),
    "scene": (
        (
            "caption_model/tag2text_swin_14m.pth",
            "https://huggingface.co/spaces/xinyu1205/recognize-anything/resolve/main/tag2text_swin_14m.pth",
        ),
    ),
    "appearance_style": (_CLIP_B32,),
    "temporal_style": (_VICLIP,),
    "overall_consistency": (_VICLIP,),
    "human_action": (
        (
            "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",
            "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/l16_ptk710_ftk710_ftk400_f16_res224.pth",
        ),
    ),
    "motion_smoothness": (("amt_model/amt-s.pth", "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"),),
    "dynamic_degree": (
        (
            "raft_model/models/raft-things.pth",
            "https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip (unzip into raft_model/)",
        ),
    ),
    "temporal_flickering": (),
}


def vbench_cache_dir() -> Path:
    """VBench's model cache: ``$VBENCH_CACHE_DIR``, default ``~/.cache/vbench`` (as VBench decides)."""
    return Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")


def check_dimensions(dimensions: Sequence[str]) -> list[str]:
    unknown = [d for d in dimensions if d not in VBENCH_DIMENSIONS]
    if unknown:
        raise MetricsError(f"unknown VBench dimensions {unknown}; choose from {', '.join(VBENCH_DIMENSIONS)}")
    return list(dict.fromkeys(dimensions))


def missing_model_files(dimensions: Sequence[str], cache_dir: str | Path | None = None) -> list[tuple[str, Path, str]]:
    """``(dimension, path, source)`` for each model file the dimensions need and the cache lacks."""
    cache = Path(cache_dir) if cache_dir is not None else vbench_cache_dir()
    return [
        (dimension, cache / relative, source)
        for dimension in dimensions
        for relative, source in MODEL_FILES[dimension]
        if not (cache / relative).exists()
    ]


def default_full_info() -> Path:
    """``VBench_full_info.json`` (946 prompts and their dimensions), as shipped in the vbench package."""
    spec = importlib.util.find_spec("vbench")
    if spec is None or not spec.submodule_search_locations:
        raise MetricsError(_install_hint("the vbench package is not installed"))
    return Path(next(iter(spec.submodule_search_locations))) / "VBench_full_info.json"


def _install_hint(problem: str) -> str:
    return (
        f"VBench cannot run: {problem}. Install it with its dependencies on the GPU machine "
        "(pip install vbench; see https://github.com/Vchitect/VBench#installation), "
        "then rerun; cal_vbench.py needs none of this"
    )


def expected_videos(full_info: str | Path, dimensions: Sequence[str], suffix: str = ".mp4") -> set[str]:
    """File names VBench's standard mode looks for: ``{prompt}-{index}{suffix}``, index 0..4."""
    try:
        entries = json.loads(Path(full_info).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetricsError(f"cannot read VBench's prompt list {full_info}: {exc}") from exc
    wanted = set(dimensions)
    return {
        f"{entry['prompt_en']}-{index}{suffix}"
        for entry in entries
        if wanted & set(entry["dimension"])
        for index in range(5)
    }


def _stage_videos(video_dir: Path, names: Sequence[str], stage: Path) -> Path:
    """A folder holding only the videos (as links), because VBench takes the file suffix from the
    first directory entry it sees and a manifest or log next to the videos would hide them all."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in names:
        (stage / name).symlink_to((video_dir / name).resolve())
    return stage


def run_vbench(
    video_dir: str | Path,
    save_dir: str | Path,
    dimensions: Sequence[str] = VBENCH_DIMENSIONS,
    device: str = "cuda",
    full_info: str | Path | None = None,
    allow_download: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Evaluate each dimension with ``vbench.VBench`` and return its result files.

    Results land in ``save_dir`` as ``{dimension}_eval_results.json`` (plus VBench's
    ``{dimension}_full_info.json``), which ``cal_vbench.py`` reads.
    """
    dimensions = check_dimensions(dimensions)
    video_dir, save_dir = Path(video_dir), Path(save_dir)
    if not video_dir.is_dir():
        raise MetricsError(f"{video_dir} is not a directory")
    full_info = Path(full_info) if full_info else default_full_info()
    present = sorted(p.name for p in video_dir.iterdir() if p.suffix.lower() == ".mp4")
    wanted = expected_videos(full_info, dimensions)
    named = [n for n in present if n in wanted]
    if not named:
        example = min(wanted, default="a prompt-0.mp4")
        raise MetricsError(
            f"none of the {len(present)} videos in {video_dir} has a name VBench looks for: its standard mode "
            f"needs '{{prompt}}-{{index}}.mp4' with prompts from {full_info.name}, e.g. '{example}'"
        )
    missing = missing_model_files(dimensions)
    if missing and not allow_download:
        listing = "\n".join(f"  {dim}: {path}  <- {source}" for dim, path, source in missing)
        raise MetricsError(
            f"VBench model files are missing from {vbench_cache_dir()} (set VBENCH_CACHE_DIR to use another "
            f"folder):\n{listing}\nDownload them there, or pass --allow-download to let VBench fetch them"
        )
    try:
        vbench = importlib.import_module("vbench")
    except ImportError as exc:
        raise MetricsError(_install_hint(f"importing vbench failed ({exc})")) from exc
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise MetricsError("VBench runs on a GPU and CUDA is not available here (--device cpu works, very slowly)")
    if len(named) < len(wanted):
        log(
            f"warning: {len(wanted) - len(named)} of the {len(wanted)} videos VBench expects are missing; "
            "scores over a subset are not comparable with published ones"
        )
    stage = _stage_videos(video_dir, named, save_dir / ".vbench_videos")
    written = []
    for dimension in dimensions:
        log(f"VBench: {dimension}")
        bench = vbench.VBench(torch.device(device), str(full_info), str(save_dir))
        bench.evaluate(
            videos_path=str(stage),
            name=dimension,
            local=True,
            read_frame=False,
            dimension_list=[dimension],
            mode="vbench_standard",
            imaging_quality_preprocessing_mode="longer",  # VBench's evaluate.py default
        )
        written.append(save_dir / f"{dimension}_eval_results.json")
    return written
