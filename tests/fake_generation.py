"""A generation run with a stand-in model in a process of its own: what the tests of concurrent
launches and killed writers start, race and ``kill -9``.

    python tests/fake_generation.py --method base --out DIR --prompts FILE [--shard 0/2]
           [--ready FILE --go FILE] [--delay 0.05] [--hang-in save|record --at N --marker FILE]

``--ready`` is created once the process is up; ``--go`` is waited for before planning (so several
processes start together). ``--hang-in``
makes the N-th video write (``save``) or record append (``record``) write half its bytes, create
``--marker`` and wait forever: the parent then kills the process mid-write. Exit 0: the run is
complete; 3: this process's part is done; 2: refused (the message on stderr).
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import time
from pathlib import Path

from magcache_videosys.experiments.manifest import ManifestError
from magcache_videosys.experiments.runner import Options, RunError, Sample, make_plan, run

PARTS = f"{os.sep}.magcache{os.sep}parts{os.sep}"


def hang(marker: Path) -> None:
    Path(marker).touch()
    while True:
        time.sleep(60)


class StandIn:
    """Writes the prompt and seed as the 'video'."""

    def __init__(self, delay: float, hang_at: int | None, marker: Path | None) -> None:
        self.delay, self.hang_at, self.marker, self.saves = delay, hang_at, marker, 0

    def __call__(self, plan):
        return self

    def generate(self, prompt: str, seed: int) -> Sample:
        time.sleep(self.delay)
        return Sample(video=f"{prompt}|{seed}" * 50, latency_transformer_s=1.0, latency_total_s=2.0)

    def save(self, sample: Sample, path: Path) -> None:
        self.saves += 1
        data = sample.video.encode()
        if self.saves == self.hang_at:
            Path(path).write_bytes(data[: len(data) // 2])
            hang(self.marker)
        Path(path).write_bytes(data)

    def check(self, sample: Sample, path: Path) -> None:
        if Path(path).read_bytes() != sample.video.encode():
            raise OSError(5, "does not read back", str(path))

    def close(self) -> None:
        pass


def hang_in_record(at: int, marker: Path) -> None:
    """Make the ``at``-th append to a part file stop half-way, whichever way the runner writes it:
    through ``os.write`` on a descriptor or through a file object opened for appending."""
    count = {"n": 0}
    real_write, real_open = os.write, builtins.open

    def is_part(fd: int) -> bool:
        try:
            return PARTS in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False

    def write(fd, data):
        if is_part(fd):
            count["n"] += 1
            if count["n"] == at:
                real_write(fd, bytes(data[: len(data) // 2]))
                hang(marker)
        return real_write(fd, data)

    class HalfFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            count["n"] += 1
            if count["n"] == at:
                self.f.write(text[: len(text) // 2])
                self.f.flush()
                hang(marker)
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfFile(f) if "a" in mode and PARTS in os.fspath(file) else f

    os.write = write
    builtins.open = open_


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--method", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--num-samples", type=int, default=2)
    p.add_argument("--shard")
    p.add_argument("--ready", type=Path)
    p.add_argument("--go", type=Path)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--hang-in", choices=("save", "record"))
    p.add_argument("--at", type=int, default=1)
    p.add_argument("--marker", type=Path)
    args = p.parse_args()
    if args.ready is not None:
        args.ready.touch()
    if args.go is not None:
        while not args.go.exists():
            time.sleep(0.005)
    if args.hang_in == "record":
        hang_in_record(args.at, args.marker)
    generator = StandIn(args.delay, args.at if args.hang_in == "save" else None, args.marker)
    options = Options(
        method=args.method, out=args.out, prompts=args.prompts, num_samples=args.num_samples, shard=args.shard
    )
    try:
        result = run(make_plan(options), generator, progress=False)
    except (ManifestError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if result.complete else 3


if __name__ == "__main__":
    sys.exit(main())
