"""Throughput of each image metric on this CPU, and the cost of the real architectures.

Run: ``python benchmarks/bench_image_metrics.py`` (tiny models, about a minute) or
``--full clipscore hps dreamsim`` (the real architectures with random weights: ViT-L/14
428M parameters, ViT-H-14 986M, the DreamSim ensemble 3 x ViT-B/16; several minutes and
up to 8 GB of memory). No weights are needed either way.

For each metric it builds the model, then times ``scorer(images, prompts)`` with and without
the image gradient (a reward needs the gradient; evaluation does not), all metrics in turn in
every round (:func:`_timing.interleaved`), and prints images per second and the forward /
forward+backward ratio. Inputs are 64 x 64 images for tiny models (resized to each model's
input) and 512 x 512 for the real ones (what SD 1.5 decodes), batch ``--batch``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import interleaved  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _test_module(name: str):
    """The tiny-model builders that live beside the tests."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "vision" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_scorers(tmp: Path) -> dict:
    from am.vision.clip import AestheticMLP, AestheticScore, ClipEncoder, ClipScore, PickScore
    from am.vision.dreamsim import DreamSimEmbedder
    from am.vision.hps import HPSv2
    from am.vision.testing import tiny_clip_dir, tiny_open_clip

    clip_dir = tiny_clip_dir(tmp / "clip", image_size=224)
    scorers = {
        "clipscore": ClipScore(ClipEncoder.from_dir(clip_dir)),
        "pickscore": PickScore(ClipEncoder.from_dir(clip_dir)),
        "aesthetic": AestheticScore(ClipEncoder.from_dir(clip_dir), AestheticMLP(16)),
        "hpsv2.1": HPSv2(*tiny_open_clip(image_size=224), version="v2.1"),
    }
    try:
        ir = _test_module("test_imagereward")
        (tmp / "ir").mkdir()
        scorers["imagereward"] = ir.tiny_imagereward(tmp / "ir")
    except Exception as err:  # noqa: BLE001 - a benchmark reports what it could not build
        print(f"imagereward: not timed ({err})")
    ds = _test_module("test_dreamsim")
    weights = ds.write_tiny_dreamsim(tmp / "dreamsim")
    scorers["dreamsim"] = DreamSimEmbedder.from_files(weights, vit=ds.tiny_vit)
    return {k: v for k, v in scorers.items() if v is not None}


def full_scorers(names: list[str]) -> dict:
    import open_clip
    from transformers import CLIPConfig, CLIPModel

    from am.vision.clip import ClipEncoder, ClipScore
    from am.vision.hps import HPSv2
    from am.vision.testing import write_clip_tokenizer

    out = {}
    if "clipscore" in names:  # ViT-L/14 sizes from openai/clip-vit-large-patch14's config
        tok = write_clip_tokenizer(Path(tempfile.mkdtemp()))
        config = CLIPConfig(
            text_config=dict(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                vocab_size=49408,
            ),
            vision_config=dict(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=24,
                num_attention_heads=16,
                image_size=224,
                patch_size=14,
            ),
            projection_dim=768,
        )
        from transformers import CLIPTokenizer

        out["clipscore"] = ClipScore(
            ClipEncoder(CLIPModel(config), CLIPTokenizer.from_pretrained(tok))
        )
    if "hps" in names:
        out["hpsv2.1"] = HPSv2(
            open_clip.create_model("ViT-H-14", pretrained=None),
            open_clip.get_tokenizer("ViT-H-14"),
            version="v2.1",
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", nargs="*", default=None, help="clipscore hps")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--memory",
        action="store_true",
        help="with --full: peak memory of forward+backward per image (subprocesses)",
    )
    ap.add_argument("--probe", nargs=2, metavar=("NAME", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe:
        return probe(args.probe[0], int(args.probe[1]))
    if args.memory:
        return memory(args.full or ["clipscore", "hps"])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    if args.full is None:
        scorers, size = tiny_scorers(Path(tempfile.mkdtemp())), 64
    else:
        scorers, size = full_scorers(args.full), 512
    print(
        f"built {len(scorers)} models in {time.perf_counter() - t0:.1f} s; batch {args.batch} "
        f"of {size} x {size} images, {args.threads} thread(s), torch {torch.__version__}"
    )
    images = torch.rand(args.batch, 3, size, size)
    prompts = ["a photograph of a red fox in the snow"] * args.batch
    fns = {}
    for name, scorer in scorers.items():
        fns[f"{name} fwd"] = _no_grad(scorer, images, prompts)
        fns[f"{name} fwd+bwd"] = _with_grad(scorer, images, prompts)
    times = interleaved(fns, args.rounds)
    print(f"{'metric':<14}{'params':>10}{'img/s fwd':>12}{'img/s fwd+bwd':>15}{'bwd cost':>10}")
    for name, scorer in scorers.items():
        fwd = statistics.median(times[f"{name} fwd"])
        both = statistics.median(times[f"{name} fwd+bwd"])
        params = sum(p.numel() for p in scorer.parameters())
        print(
            f"{name:<14}{params / 1e6:>9.2f}M{args.batch / fwd:>12.1f}{args.batch / both:>15.1f}"
            f"{both / fwd:>9.2f}x"
        )


def probe(name: str, batch: int) -> None:
    """Print the peak resident memory (MB) added by one forward+backward of ``batch`` images."""
    import resource

    scorer = next(iter(full_scorers([name]).values()))
    images = torch.rand(batch, 3, 512, 512)
    _with_grad(scorer, images[:1], ["warm up"])()  # allocator and thread pools settle
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _with_grad(scorer, images, ["a photograph of a red fox in the snow"] * batch)()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{after - before:.0f}")


def memory(names: list[str]) -> None:
    """Activation memory per image of a reward's forward+backward, from the peak resident
    memory at batch 2 and 4 (each in a fresh process): the slope is what a GPU needs per image
    on top of the weights, in float32."""
    import subprocess

    print(f"{'metric':<14}{'params MB':>10}{'peak +MB b=2':>14}{'b=4':>8}{'MB/image':>10}")
    for name in names:
        peaks = []
        for batch in (2, 4):
            cmd = [sys.executable, __file__, "--probe", name, str(batch)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            peaks.append(float(out.strip().splitlines()[-1]))
        params = sum(p.numel() for p in next(iter(full_scorers([name]).values())).parameters())
        print(
            f"{name:<14}{params * 4 / 2**20:>10.0f}{peaks[0]:>14.0f}{peaks[1]:>8.0f}"
            f"{(peaks[1] - peaks[0]) / 2:>10.0f}"
        )


def _no_grad(scorer, images, prompts):
    def run():
        with torch.no_grad():
            out = scorer.embed(images) if hasattr(scorer, "embed") else scorer(images, prompts)
        return out

    return run


def _with_grad(scorer, images, prompts):
    def run():
        x = images.clone().requires_grad_(True)
        out = scorer.embed(x) if hasattr(scorer, "embed") else scorer(x, prompts)
        out.sum().backward()

    return run


if __name__ == "__main__":
    main()
