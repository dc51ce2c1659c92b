"""Prompts as conditions: draw prompts, encode them with the pipeline's frozen text encoders.

A condition here is a dict of tensors with one row per sample (:mod:`am.conditions`): the
pipeline family's prompt embeddings (``prompt_embeds``, and ``pooled_prompt_embeds`` for SD3)
and ``prompt_index``, the row of the prompt in the sampler's list, so that a reward can look the
text up. Prompts are encoded once per batch, under no-grad, by the pipeline's own
``encode_prompt``; GRPO groups and DPO pairs share one prompt and are encoded once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from am.conditions import ConditionSampler

__all__ = [
    "ENCODERS",
    "encode_prompts",
    "PromptSampler",
    "PROMPT_ORDERS",
    "null_condition",
    "read_prompts",
]


def _encode_sd15(pipe, prompts: list[str], device) -> dict[str, Tensor]:
    embeds, _ = pipe.encode_prompt(prompts, device, 1, do_classifier_free_guidance=False)
    return {"prompt_embeds": embeds}


def _encode_sd3(pipe, prompts: list[str], device) -> dict[str, Tensor]:
    t5 = getattr(pipe, "tokenizer_3", None)
    length = min(256, t5.model_max_length) if t5 is not None else 256  # SD3's default: 256
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompts, prompts, prompts, device=device, do_classifier_free_guidance=False,
        max_sequence_length=length,
    )  # fmt: skip
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


def _encode_flux(pipe, prompts: list[str], device) -> dict[str, Tensor]:
    length = min(512, pipe.tokenizer_2.model_max_length)  # Flux-dev: 512 T5 tokens
    embeds, pooled, _ = pipe.encode_prompt(
        prompts, prompts, device=device, max_sequence_length=length
    )
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


# pipeline class name -> how its prompts become condition tensors
ENCODERS: dict[str, Callable] = {
    "StableDiffusionPipeline": _encode_sd15,
    "StableDiffusion3Pipeline": _encode_sd3,
    "FluxPipeline": _encode_flux,
}


def encode_prompts(pipe, prompts: Sequence[str], device=None) -> dict[str, Tensor]:
    """The condition tensors of ``prompts`` for ``pipe`` (no gradient)."""
    name = type(pipe).__name__
    if name not in ENCODERS:
        raise ValueError(f"no prompt encoder for {name}; supported: {', '.join(ENCODERS)}")
    with torch.no_grad():
        return ENCODERS[name](pipe, list(prompts), device or pipe.device)


PROMPT_ORDERS = ("uniform", "epochs")


class PromptSampler(ConditionSampler):
    """Prompts from ``prompts``, encoded by ``pipe``. ``order``: ``"uniform"`` draws each
    prompt uniformly with replacement from the micro-batch's generator; ``"epochs"`` walks the
    list in epochs without replacement, as the Adjoint Matching authors' Stable Diffusion code
    does (a shuffled ``DataLoader``): the run's ``p``-th prompt is ``perm_e[p mod N]`` with
    ``e = p div N`` and ``perm_e`` a permutation drawn from ``(seed, e)`` alone, so each prompt is
    used once per epoch, and a resumed or multi-process run draws the same prompts. ``p`` is the
    micro-batch's place in the run (:data:`am.train.DRAW_POSITION`, set by the trainer)."""

    def __init__(self, pipe, prompts: Sequence[str], device=None, *, order="uniform", seed=0):
        if not prompts or isinstance(prompts, str):
            raise ValueError("prompts must be a non-empty list of strings")
        if order not in PROMPT_ORDERS:
            raise ValueError(f"prompt order must be one of {PROMPT_ORDERS}, got {order!r}")
        self.pipe, self.prompts, self.device = pipe, list(prompts), device
        self.order, self.seed = order, int(seed)

    def indices(self, n: int, generator: torch.Generator) -> Tensor:
        """The rows ``[n]`` of the prompt list that the next draw of ``n`` prompts takes."""
        if self.order == "uniform":
            # drawn on the generator's device (the trainer's is the model's, a GPU's)
            draw = torch.randint(
                len(self.prompts), (n,), generator=generator, device=generator.device
            )
            return draw.cpu()
        from am.train_config import DRAW_POSITION

        position = DRAW_POSITION.get()
        if position is None:
            raise RuntimeError(
                "prompt order 'epochs' needs the trainer's draw position (am.train.DRAW_POSITION)"
            )
        N = len(self.prompts)
        start = position.index * n  # every micro-batch of a run draws the same n
        epochs = {}
        out = []
        for p in range(start, start + n):
            e = p // N
            if e not in epochs:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
                epochs[e] = torch.randperm(N, generator=g)
            out.append(epochs[e][p % N])
        return torch.stack(out)

    def draw(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        index = self.indices(n, generator)
        cond = encode_prompts(self.pipe, [self.prompts[i] for i in index], self.device)
        cond["prompt_index"] = index.to(next(iter(cond.values())).device)
        return cond


def null_condition(pipe, device=None) -> dict[str, Tensor]:
    """The empty prompt's condition (one row; ``prompt_index = -1``): classifier-free
    guidance's unconditional branch."""
    cond = encode_prompts(pipe, [""], device)
    cond["prompt_index"] = torch.full((1,), -1, device=next(iter(cond.values())).device)
    return cond


def read_prompts(path) -> list[str]:
    """One prompt per line of a text file (blank lines and ``#`` comments skipped)."""
    from pathlib import Path

    lines = Path(path).read_text(encoding="utf-8").splitlines()
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts
