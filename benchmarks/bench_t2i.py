"""Seconds per training iteration and peak memory of every method on a text-to-image denoiser,
as a ratio to one sampling pass.

Run: ``python benchmarks/bench_t2i.py --arch tiny-sd15`` (CPU, seconds) or, on a GPU,
``--arch sd15 --size 512 --batch 4 --steps 40`` / ``--arch sd35-medium ...``: the full
architectures with random weights (the cost does not depend on the weights; nothing is
downloaded), LoRA rank ``--lora-rank`` (0: the full denoiser against a frozen copy).
``--dtype bfloat16``: mixed precision as ``model.dtype: bfloat16`` in ``python -m amcli.t2i``
(frozen denoiser and VAE in bfloat16, the LoRA or the full trainable copy in float32, the
network under autocast); ``--tf32``: TF32 matmuls and convolutions (default: full float32).

For each method of ``baselines.METHODS`` (its recommended config with ``num_steps = --steps``)
it times one iteration (rollouts, loss, backward) and one ODE sampling pass of the same batch
with the fine-tuned model, interleaved over ``--rounds`` rounds (``_timing.py``), and prints the
median ratio iteration / sampling pass. On CUDA it also prints the peak memory of the
iteration. The reward is the decoded image's mean brightness (through the real VAE decoder), so
that the numbers are the method's cost, not a scorer's. Prompt embeddings are random tensors of
the text encoders' shapes (the encoders run once per batch, outside the loop).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._timing import interleaved  # noqa: E402

# full-size denoiser and VAE configs (random weights): SD 1.5's UNet, SD 3.5 medium's transformer
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)  # fmt: skip
SD35M_TRANSFORMER = dict(
    sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
    attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
    caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=384,
    qk_norm="rms_norm", dual_attention_layers=tuple(range(13)),
)  # fmt: skip
SD_VAE = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)  # fmt: skip


class RandomPrompts:
    """Prompt conditions of the text encoders' shapes (random, fixed per index)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], count: int = 64, device="cpu"):
        g = torch.Generator().manual_seed(0)
        self.bank = {k: torch.randn(count, *s, generator=g).to(device) for k, s in shapes.items()}
        self.count = count

    def __call__(self, batch_size, generator, *, group=1):
        # the trainer's generator lives on the model's device (a GPU's draws need its device)
        index = torch.randint(
            self.count, (batch_size // group,), generator=generator, device=generator.device
        ).to(next(iter(self.bank.values())).device)
        index = index.repeat_interleave(group)
        return {**{k: v[index] for k, v in self.bank.items()}, "prompt_index": index}


def build(arch: str, size: int, lora_rank: int, dtype: torch.dtype, device):
    """(model, base, reward, schedule, sample_shape, conditions) for ``arch``, with the frozen
    weights (denoiser, VAE) in ``dtype`` and the trainable ones (the LoRA, or the full copy) in
    float32, the network running under autocast to ``dtype``: the library's mixed precision, as
    ``python -m amcli.t2i`` with ``model.dtype`` sets it up (:func:`am.t2i.setup.text_to_image`)."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, UNet2DConditionModel

    from am.models import finetunable_copy
    from am.schedules import DiscreteVPSchedule
    from am.t2i.denoisers import SD3Velocity, UNetVelocity
    from am.t2i.lora import AdaptersDisabled, LoraSettings, add_lora
    from am.t2i.reward import DecodedReward, LatentDecoder
    from am.t2i.schedules import ShiftedFlowMatchingSchedule
    from am.t2i.setup import text_to_image
    from am.t2i.testing import tiny_flux, tiny_sd3, tiny_sd15

    def brightness(images, prompts):
        return images.mean(dim=(1, 2, 3))

    lora = LoraSettings(rank=lora_rank, alpha=float(lora_rank)) if lora_rank else None
    tiny = {"tiny-sd15": tiny_sd15, "tiny-sd3": tiny_sd3, "tiny-flux": tiny_flux}
    if arch in tiny:
        setup = text_to_image(tiny[arch]().to(device, dtype), [f"prompt {i}" for i in range(16)],
                              brightness, height=size, width=size, lora=lora)  # fmt: skip
        kw = setup.finetune_kwargs()
        model = kw["model"] or finetunable_copy(kw["base"])
        return model, kw["base"], kw["reward"], kw["schedule"], kw["sample_shape"], kw["conditions"]
    torch.manual_seed(0)
    if arch == "sd15":
        net = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD_VAE, latent_channels=4, scaling_factor=0.18215)
        conditions = RandomPrompts({"prompt_embeds": (77, 768)}, device=device)
    else:
        net = SD3Transformer2DModel(**SD35M_TRANSFORMER)
        vae = AutoencoderKL(
            **SD_VAE, latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609
        )
        conditions = RandomPrompts(
            {"prompt_embeds": (333, 4096), "pooled_prompt_embeds": (2048,)}, device=device
        )
    # frozen weights in dtype before the adapter is built: it takes its compute dtype from them
    net, vae = net.to(device, dtype).eval(), vae.to(device, dtype).eval()
    net.requires_grad_(False)
    if arch == "sd15":
        velocity = UNetVelocity(net, DiscreteVPSchedule(), "epsilon")
    else:
        velocity = SD3Velocity(net, ShiftedFlowMatchingSchedule(3.0))
    if lora is not None:
        add_lora(net, lora)
        model, base = velocity, AdaptersDisabled(velocity, net)
    else:
        base, model = velocity, finetunable_copy(velocity)  # float32, autocast to dtype
    reward = DecodedReward(LatentDecoder(vae), brightness, [f"prompt {i}" for i in range(64)])
    latent = (vae.config.latent_channels, size // 8, size // 8)
    return model, base, reward, velocity.schedule, latent, conditions


def main() -> None:
    import am
    import baselines
    from am.conditions import tile
    from am.methods.base import FineTuningProblem
    from am.t2i.denoisers import set_tf32

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--arch",
        default="tiny-sd15",
        choices=["tiny-sd15", "tiny-sd3", "tiny-flux", "sd15", "sd35-medium"],
    )
    ap.add_argument("--size", type=int, default=None, help="image size in pixels")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lora-rank", type=int, default=4)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmuls and convolutions (GPU)")
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    size = args.size or (
        32 if args.arch == "tiny-flux" else 16 if args.arch.startswith("tiny") else 512
    )
    dtype = getattr(torch, args.dtype)
    set_tf32(args.tf32)  # off: float32 throughout, as python -m amcli.t2i's default
    model, base, reward, schedule, shape, conditions = build(
        args.arch, size, args.lora_rank, dtype, device
    )
    if args.checkpointing:
        for module in (getattr(model, "unet", None), getattr(model, "transformer", None)):
            if module is not None:
                module.enable_gradient_checkpointing()
        reward.decoder.vae.enable_gradient_checkpointing()
    problem = FineTuningProblem(base=base, reward=reward, schedule=schedule, sample_shape=shape,
                                reward_scale=100.0, conditions=conditions)  # fmt: skip
    names = args.methods or sorted(baselines.METHODS)
    methods = {}
    for name in names:
        cls = baselines.METHODS[name]
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        if "group_size" in fields and args.batch < 2:  # GRPO's group: 2 samples of a prompt
            print(f"{name}: skipped, its groups need --batch 2 or more", flush=True)
            continue
        extra = {"group_size": min(4, args.batch)} if "group_size" in fields else {}
        config = dataclasses.replace(cls.recommended_config(), num_steps=args.steps, **extra)
        methods[name] = cls(config, problem)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = lambda: torch.Generator(device).manual_seed(0)  # noqa: E731

    def iteration(method):
        def run():
            for p in params:
                p.grad = None
            method.loss(model, batch_size=args.batch, generator=gen()).loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        return run

    cond = conditions(args.batch, torch.Generator().manual_seed(1))
    cond = {k: v.to(device) for k, v in cond.items()}

    def sampling():
        with torch.no_grad():
            am.sample(lambda x, t: model(x, t, tile(cond, x.shape[0])), args.batch, shape,
                      schedule=schedule, num_steps=args.steps,
                      diffusion=am.make_diffusion("ode", schedule), device=device)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()

    # The first call of each is the warm-up and, on CUDA, measures the peak memory; a method that
    # runs out of memory is reported so, and the others still run.
    peaks, failed = {}, {}
    sampling()
    for name, method in methods.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            iteration(method)()
        except torch.OutOfMemoryError:
            failed[name] = torch.cuda.max_memory_allocated() / 2**30
            for p in params:
                p.grad = None
            torch.cuda.empty_cache()
            continue
        peaks[name] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    fns = {"sampling": sampling, **{n: iteration(methods[n]) for n in peaks}}
    t0 = time.perf_counter()
    times = interleaved(fns, args.rounds, warmup=False)
    trainable = sum(p.numel() for p in params)
    print(
        f"{args.arch}, {size} px, batch {args.batch}, K = {args.steps}, "
        f"{args.dtype} frozen weights (trainable float32), TF32 {'on' if args.tf32 else 'off'}, "
        f"{'LoRA rank ' + str(args.lora_rank) if args.lora_rank else 'full'} "
        f"({trainable / 1e6:.2f}M trainable), checkpointing {args.checkpointing}, {device}, "
        f"torch {torch.__version__}; {args.rounds} rounds in {time.perf_counter() - t0:.0f} s"
    )
    pass_s = statistics.median(times["sampling"])
    print(
        "\n| method | s / iteration | x sampling pass | peak memory (GiB) |\n| --- | --- | --- | --- |"
    )
    print(f"| one ODE sampling pass | {pass_s:.3f} | 1.00 | |")
    for name, peak in failed.items():
        print(f"| {name} | out of memory | | over {peak:.1f} |")
    for name in peaks:
        ratios = [t / s for t, s in zip(times[name], times["sampling"], strict=True)]
        peak = f"{peaks[name]:.1f}" if peaks[name] is not None else "n/a (CPU)"
        print(
            f"| {name} | {statistics.median(times[name]):.3f} | {statistics.median(ratios):.2f} | {peak} |"
        )


if __name__ == "__main__":
    main()
