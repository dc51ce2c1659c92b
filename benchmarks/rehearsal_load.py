"""A pipeline written by ``python -m amcli.t2i rehearse write``, loaded as a fine-tuning run
loads it: time to load, set up and evaluate the base velocity once.

Run (after writing, e.g. ``python -m amcli.t2i rehearse write --out /tmp/rehearsal``)::

    /usr/bin/time -v python benchmarks/rehearsal_load.py /tmp/rehearsal/sd15 --variant fp16
    /usr/bin/time -v python benchmarks/rehearsal_load.py /tmp/rehearsal/sd35m --dtype bfloat16

``/usr/bin/time -v`` adds the peak resident memory ("Maximum resident set size"). The path runs
through the suite's own code: :func:`am.t2i.loading.load_pipeline` (the loader of
``python -m amcli.t2i``), :func:`am.t2i.setup.text_to_image` (which encodes the empty prompt)
and one prompt's condition, then one call of the base velocity at ``--size`` pixels, under
autocast to ``--dtype``. A reward of the images' mean brightness stands in for the scorers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="a written pipeline folder (or a hub id in $HF_HUB_CACHE)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--variant", default=None, help="e.g. fp16 (SD 1.5)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from am.t2i.loading import load_pipeline
    from am.t2i.setup import text_to_image

    start = time.perf_counter()
    pipe = load_pipeline(args.path, args.dtype, "cpu", variant=args.variant)
    loaded = {k: sum(p.numel() for p in v.parameters()) for k, v in pipe.components.items()
              if isinstance(v, torch.nn.Module)}  # fmt: skip
    print(f"load: {time.perf_counter() - start:.1f} s, parameters {loaded}", flush=True)
    start = time.perf_counter()
    setup = text_to_image(pipe, ["a photo of a cat"], lambda images, prompts: images.mean((1, 2, 3)),
                          height=args.size, width=args.size)  # fmt: skip
    kw = setup.finetune_kwargs()
    cond = kw["conditions"](1, torch.Generator().manual_seed(0))
    shapes = {k: tuple(v.shape) for k, v in cond.items()}
    print(f"set up and encode: {time.perf_counter() - start:.1f} s, {shapes}", flush=True)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=args.dtype != "float32"):
        v = kw["base"](torch.randn(1, *kw["sample_shape"]), torch.full((1,), 0.3), cond)
    print(f"velocity at {args.size} px: {time.perf_counter() - start:.1f} s, {tuple(v.shape)}, "
          f"finite {bool(torch.isfinite(v).all())}")  # fmt: skip


if __name__ == "__main__":
    main()
