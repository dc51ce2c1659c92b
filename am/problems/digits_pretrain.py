"""Training and caching the digits benchmark's networks: the classifiers and the base flow model.

:func:`digits_assets` returns every network the benchmark needs, training what its cache
folder does not hold yet and loading the rest (safetensors for the classifiers, diffusers'
``save_pretrained`` folder for the UNet). Training is seeded and single-process, so a cache
written by one run is what another run would have trained.

The base is trained by conditional flow matching in this library's convention,
``x_t = alpha_t x_1 + beta_t x_0`` with ``x_0 ~ N(0, I)`` and target
``d_alpha_t x_1 + d_beta_t x_0`` (``docs/maths.md``), the class label replaced by the "no class"
label with probability ``label_dropout`` so that the same network gives classifier-free
guidance.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from am.models.unet import UNetVelocity, digits_unet, load_unet
from am.problems.digits import (
    ClassifierReward,
    DigitsCNN,
    DigitsEmbedding,
    DigitsMLP,
    DigitsSplit,
    load_digits_splits,
)
from am.schedules import FlowMatchingSchedule, Schedule

__all__ = ["PretrainConfig", "DigitsAssets", "digits_assets", "train_classifier", "train_flow"]


@dataclass(frozen=True)
class PretrainConfig:
    """``flow_steps``/``flow_batch``/``flow_lr``: the base model's AdamW steps (cosine decay);
    ``channels``: its UNet widths; ``label_dropout``: how often the label is dropped (CFG);
    ``classifier_steps``/``classifier_noise``: classifier training, on images with Gaussian
    noise of that std added (so that they judge imperfect generations sensibly). The defaults are
    the digits benchmark's (``config/config.yaml``, ``digits.pretrain``)."""

    flow_steps: int = 1000
    flow_batch: int = 128
    flow_lr: float = 2e-3
    channels: tuple[int, int] = (16, 32)
    label_dropout: float = 0.1
    classifier_steps: int = 600
    classifier_noise: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class DigitsAssets:
    """``base``: the frozen conditional base velocity ``(x, t, labels)``; ``reward``:
    ``log p(c | x)`` of the reward CNN; ``heldout``: the held-out MLP classifier (logits);
    ``embedding``: the feature network; ``test``: the real test images; ``accuracy``: each
    classifier's accuracy on ``test``."""

    base: UNetVelocity
    reward: ClassifierReward
    heldout: nn.Module
    embedding: DigitsEmbedding
    test: DigitsSplit
    accuracy: dict[str, float]


def train_classifier(
    net: nn.Module, data: DigitsSplit, *, steps: int, noise: float, seed: int, batch: int = 128
) -> nn.Module:
    """Cross-entropy with AdamW (lr 3e-3, cosine decay) on ``data`` plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=g)
        x = data.images[idx] + noise * torch.randn(data.images[idx].shape, generator=g)
        loss = F.cross_entropy(net(x), data.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def flow_matching_loss(
    velocity: nn.Module, x1: Tensor, labels: Tensor, *, schedule: Schedule, generator
) -> Tensor:
    """Conditional flow matching: ``E |v(x_t, t, c) - (d_alpha x_1 + d_beta x_0)|^2``."""
    x0 = torch.randn(x1.shape, generator=generator)
    t = torch.rand(x1.shape[0], generator=generator)
    sv = schedule(t).broadcast_to(x1)
    x_t = sv.alpha * x1 + sv.beta * x0
    target = sv.d_alpha * x1 + sv.d_beta * x0
    return (velocity(x_t, t, labels) - target).pow(2).mean()


def train_flow(velocity: UNetVelocity, data: DigitsSplit, cfg: PretrainConfig) -> UNetVelocity:
    """The base model by conditional flow matching (:func:`flow_matching_loss`)."""
    g = torch.Generator().manual_seed(cfg.seed)
    schedule = FlowMatchingSchedule()
    opt = torch.optim.AdamW(velocity.parameters(), lr=cfg.flow_lr, weight_decay=0.0)
    lr = lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.flow_steps))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr)
    null = velocity.unet.config.num_class_embeds - 1
    for _ in range(cfg.flow_steps):
        idx = torch.randint(len(data), (cfg.flow_batch,), generator=g)
        labels = data.labels[idx].clone()
        labels[torch.rand(len(idx), generator=g) < cfg.label_dropout] = null
        loss = flow_matching_loss(
            velocity, data.images[idx], labels, schedule=schedule, generator=g
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return velocity.eval()


def _accuracy(net: nn.Module, data: DigitsSplit) -> float:
    with torch.no_grad():
        return float((net(data.images).argmax(-1) == data.labels).float().mean())


def _cached_classifier(
    path: Path, net: nn.Module, data: DigitsSplit, cfg: PretrainConfig, seed: int
) -> nn.Module:
    """``net`` loaded from ``path``, or trained on ``data`` and saved there."""
    if path.is_file():
        net.load_state_dict(load_file(path))
        return net.eval()
    train_classifier(net, data, steps=cfg.classifier_steps, noise=cfg.classifier_noise, seed=seed)
    save_file(net.state_dict(), path)
    return net


def digits_assets(
    cache: str | Path, cfg: PretrainConfig = PretrainConfig(), *, reward_temperature: float = 10.0
) -> DigitsAssets:
    """Every network of the benchmark, trained into ``cache`` on first use and loaded after.
    A cache written with another config is refused (its ``pretrain_config.json`` is compared).
    Loading a complete cache writes nothing (many jobs read it at once; it may be read-only).
    ``reward_temperature``: the reward's ``T`` (:class:`ClassifierReward`)."""
    cache = Path(cache)
    record = cache / "pretrain_config.json"
    wanted = json.loads(json.dumps(asdict(cfg)))
    if record.is_file():
        if json.loads(record.read_text()) != wanted:
            raise ValueError(
                f"{cache} holds networks trained with another pretraining config "
                f"({record}); use another folder or delete it"
            )
    else:  # a new cache: the record first, so that a second caller is compared with it
        cache.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(wanted, indent=1))
    splits = load_digits_splits(cfg.seed)
    torch.manual_seed(cfg.seed)
    reward_net = _cached_classifier(
        cache / "reward_cnn.safetensors", DigitsCNN(), splits["reward"], cfg, seed=1
    )
    heldout = _cached_classifier(
        cache / "heldout_mlp.safetensors", DigitsMLP(), splits["heldout"], cfg, seed=2
    )
    embedding = _cached_classifier(
        cache / "embedding.safetensors", DigitsEmbedding(), splits["flow"], cfg, seed=3
    )
    unet_dir = cache / "base_unet"
    if (unet_dir / "config.json").is_file():
        base = UNetVelocity(load_unet(unet_dir))
    else:
        base = train_flow(UNetVelocity(digits_unet(cfg.channels)), splits["flow"], cfg)
        base.unet.save_pretrained(unet_dir)
    test = splits["test"]
    accuracy = {
        "reward_cnn": _accuracy(reward_net, test),
        "heldout_mlp": _accuracy(heldout, test),
        "embedding": _accuracy(embedding, test),
    }
    return DigitsAssets(
        base=base.requires_grad_(False).eval(),
        reward=ClassifierReward(reward_net, reward_temperature),
        heldout=heldout.requires_grad_(False),
        embedding=embedding.requires_grad_(False),
        test=test,
        accuracy=accuracy,
    )
