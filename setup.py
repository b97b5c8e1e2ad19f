from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="magcache_videosys",
    version="0.1.0",
    description="MagCache (magnitude-aware step caching) as a VideoSys acceleration plugin, with calibration, "
    "baselines and evaluation for video diffusion transformers",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["magcache_videosys", "magcache_videosys.*"]),
    package_data={
        "magcache_videosys.ratio_tables": ["*.json"],
        "magcache_videosys.experiments": ["*.json"],
        "magcache_videosys.testbed": [
            "*.json",
            "teacache/*.json",
            "weights/*.safetensors",
            "weights/*.json",
            "study/*.json",
        ],
    },
    # torch is left unpinned so GPU users keep their CUDA build; on a CPU-only machine install
    # torch first (the README pins the CPU wheel used for tests).
    install_requires=["torch>=2.1", "numpy", "tqdm"],
    extras_require={
        "plot": ["matplotlib"],
        "eval": ["imageio", "imageio-ffmpeg", "matplotlib"],
        "test": [
            "pytest>=7",
            "ruff==0.17.6",  # exact: formatting and rules change between releases
            "diffusers>=0.30,<1",
            "transformers>=4.39,<5",  # the tiny T5 text encoders of the VideoSys-free model tests
            "matplotlib",
            "imageio",
            "imageio-ffmpeg",
            "scikit-image",
        ],
    },
    entry_points={"console_scripts": ["magcache-videosys=magcache_videosys.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
