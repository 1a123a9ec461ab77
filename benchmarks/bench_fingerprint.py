"""Cost of the full-content weights fingerprint, against loading the same weights.

The fingerprint (``audit.models.fingerprint``) hashes every byte of a model directory's weight, config and
tokenizer files; per-file digests are cached by path, size, mtime, ctime and inode. This prints, in
one run: the first fingerprint (empty digest cache), a repeat (cached), the previous sampled scheme
(name, size, first and last MiB of each file; kept here as the baseline) and reading the weights
with safetensors, which every run does anyway.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_fingerprint.py                       # builtin:smollm2 (640 MB)
    OMP_NUM_THREADS=1 python benchmarks/bench_fingerprint.py --model /work/models/smollm2-hf
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path


def sampled_fingerprint(path: Path) -> str:
    """The previous scheme: name, size, first and last MiB of each file (missed middle-layer changes)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        size = f.stat().st_size
        h.update(f.name.encode() + str(size).encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:smollm2", help="a model directory or builtin:NAME")
    args = ap.parse_args()
    if args.model.startswith("builtin:"):
        from audit.models.builtin import resolve

        d = Path(resolve(args.model))   # built or converted once, cached (before the digest cache is emptied)
    else:
        d = Path(args.model)
    # An empty digest cache: the first fingerprint below hashes every byte. cache_dir() is read per call.
    os.environ["AUDIT_CACHE"] = tempfile.mkdtemp(prefix="bench-fp-")
    from audit.models.fingerprint import fingerprint_path

    t = time.perf_counter()
    fp = fingerprint_path(d)
    first = time.perf_counter() - t
    t = time.perf_counter()
    again = fingerprint_path(d)
    cached = time.perf_counter() - t
    assert again == fp
    t = time.perf_counter()
    sampled_fingerprint(d)
    sampled = time.perf_counter() - t
    weights = sorted(d.glob("*.safetensors"))
    t = time.perf_counter()
    if weights:
        from safetensors.torch import load_file

        for w in weights:
            load_file(str(w))
    load = time.perf_counter() - t
    print(f"{d}: {len(fp.files)} files, {fp.total_bytes / 1e6:.0f} MB hashed, fingerprint {fp.digest}")
    print(f"  full hash, first run   {first:8.3f} s  ({fp.total_bytes / 1e9 / max(first, 1e-9):.2f} GB/s)")
    print(f"  full hash, cached      {cached * 1000:8.2f} ms")
    print(f"  sampled (previous)     {sampled * 1000:8.2f} ms")
    print(f"  safetensors load       {load:8.3f} s   first-run hash / load = {first / max(load, 1e-9):.2f}")


if __name__ == "__main__":
    main()
