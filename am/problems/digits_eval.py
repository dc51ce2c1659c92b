"""The digits benchmark's evaluation: the paper's four columns, and the importance-sampling
reference of the tilted target beside them.

For a model, ``per_class`` generations of every class (the ten "prompts"):

* ``reward``: mean ``log p_reward(c | x)`` (consistency with the prompt, what was optimised);
* ``heldout``: mean ``log p_heldout(c | x)`` of the held-out classifier, and ``heldout_acc`` its
  accuracy (never optimised: generalisation to an unseen reward);
* ``diversity``: per class, the mean pairwise distance of the generations' embeddings, averaged
  over classes (:func:`am.metrics.grouped_diversity`);
* ``realism``: per class, the Frechet distance between generated and real test embeddings,
  averaged over classes (:func:`am.metrics.classwise_frechet`; lower is more realistic).

and three statistics of the images themselves, which see the distribution where the reward
does not (:func:`image_statistics`): ``pixel_mean``, ``out_of_range`` and ``ink``.

Each comes with its standard error (over samples for the per-sample ones, over classes for
diversity and realism). :func:`tilted_reference` estimates the same quantities for the target
``p_base(x | c) exp(lambda r(x, c)) / Z_c`` from base samples by self-normalised importance
sampling, per class, with the effective sample size (:mod:`am.metrics.importance`); diversity
uses pair weights ``w_i w_j``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from am.diffusion import make_diffusion
from am.metrics import classwise_frechet, classwise_tilted_expectation, grouped_diversity
from am.problems.digits_pretrain import DigitsAssets
from am.schedules import FlowMatchingSchedule
from am.sde import sample

__all__ = [
    "IMAGE_STATISTICS",
    "REFERENCED",
    "generate",
    "image_statistics",
    "scores",
    "seeds_stderr",
    "tilted_reference",
]

# half a grey level: the data's 17 levels are 1/8 apart in [-1, 1]
OUT_OF_RANGE = 1.0 + 1.0 / 16
IMAGE_STATISTICS = ("pixel_mean", "out_of_range", "ink")
# the columns the reference estimates (realism would need weighted real images)
REFERENCED = ("reward", "heldout", "heldout_acc", "diversity", *IMAGE_STATISTICS)


def generate(
    model, *, per_class: int, num_steps: int, diffusion: str | float, seed: int
) -> tuple[Tensor, Tensor]:
    """``per_class`` samples of each class: images ``[10 per_class, 1, 8, 8]`` and labels."""
    fm = FlowMatchingSchedule()
    labels = torch.arange(10).repeat_interleave(per_class)
    x = sample(
        model,
        len(labels),
        (1, 8, 8),
        schedule=fm,
        num_steps=num_steps,
        diffusion=make_diffusion(diffusion, fm),
        cond=labels,
        generator=torch.Generator().manual_seed(seed),
    )
    return x, labels


def _log_p(classifier, x: Tensor, labels: Tensor) -> Tensor:
    return F.log_softmax(classifier(x), -1).gather(1, labels[:, None])[:, 0]


def image_statistics(x: Tensor) -> Tensor:
    """``[B, 3]`` per image ``x [B, 1, 8, 8]``: ``pixel_mean`` (the mean of its 64 pixels; the
    data's is about -0.38), ``out_of_range`` (the fraction of pixels farther than half a grey
    level outside the data's ``[-1, 1]``) and ``ink`` (the fraction above mid-grey, ``x > 0``).
    Why these: the reward and the classifiers saturate on legible digits, while brightness,
    stroke weight and overshoot are what a sampler's or a fine-tuning's bias moves first."""
    flat = x.flatten(1).double()
    return torch.stack(
        [flat.mean(1), (flat.abs() > OUT_OF_RANGE).double().mean(1), (flat > 0).double().mean(1)],
        1,
    )


def _per_sample(x: Tensor, labels: Tensor, assets: DigitsAssets) -> tuple[list[str], Tensor]:
    """The per-sample quantities ``[N, 6]`` whose means the table reports, and their names."""
    values = torch.cat(
        [
            torch.stack(
                [
                    assets.reward(x, labels).double(),
                    _log_p(assets.heldout, x, labels).double(),
                    (assets.heldout(x).argmax(-1) == labels).double(),
                ],
                1,
            ),
            image_statistics(x),
        ],
        1,
    )
    return ["reward", "heldout", "heldout_acc", *IMAGE_STATISTICS], values


@torch.no_grad()
def scores(x: Tensor, labels: Tensor, assets: DigitsAssets) -> dict[str, float]:
    """Every column (and its standard error) for generations ``x`` of ``labels``; the
    per-sample means are class averages (equal counts per class: the pooled mean), their
    standard errors ``sqrt(sum_c se_c^2) / C`` as the reference's."""
    x = x.float()
    names, values = _per_sample(x, labels, assets)
    out = {"n_per_class": int((labels == labels[0]).sum())}
    est = classwise_tilted_expectation(
        values, labels=labels, log_weights=torch.zeros(len(labels), dtype=torch.float64)
    )
    for i, name in enumerate(names):
        out[name], out[name + "_se"] = float(est.mean[i]), float(est.stderr[i])
    feats = assets.embedding.features(x)
    div = grouped_diversity(feats, labels)
    real = classwise_frechet(
        feats, labels, assets.embedding.features(assets.test.images), assets.test.labels
    )
    out.update(
        diversity=div.mean, diversity_se=div.stderr, realism=real.mean, realism_se=real.stderr
    )
    return out


@torch.no_grad()
def tilted_reference(
    x: Tensor, labels: Tensor, assets: DigitsAssets, reward_scale: float
) -> dict[str, float]:
    """Importance-sampling estimates of the target's per-sample columns (:func:`scores`) and
    ``diversity`` from base samples ``x`` of ``labels`` (each class weighted within itself,
    :func:`am.metrics.classwise_tilted_expectation`), with standard errors, and the smallest
    per-class effective sample size ``ess_min`` (out of ``n_per_class``)."""
    x = x.float()
    names, values = _per_sample(x, labels, assets)
    log_w = reward_scale * values[:, 0]
    est = classwise_tilted_expectation(values, labels=labels, log_weights=log_w)
    feats = assets.embedding.features(x).double()
    divs = []
    for c in labels.unique():
        rows = labels == c
        w = torch.softmax(log_w[rows], 0)
        pair = w[:, None] * w[None, :]
        pair.fill_diagonal_(0)
        divs.append(float((pair * torch.cdist(feats[rows], feats[rows])).sum() / pair.sum()))
    k = len(divs)
    divs_t = torch.tensor(divs)
    out = {"reward_scale": reward_scale, "ess_min": est.ess, "n_per_class": est.n}
    for i, name in enumerate(names):
        out[name], out[name + "_se"] = float(est.mean[i]), float(est.stderr[i])
    out["diversity"], out["diversity_se"] = float(divs_t.mean()), float(divs_t.std() / k**0.5)
    return out


def seeds_stderr(values: Sequence[float], stderrs: Sequence[float]) -> float:
    """The standard error of the mean of ``n`` training seeds' values, each with its own
    sampling standard error: ``sqrt(max(mean_i se_i^2, s^2) / n)``, ``s^2`` the variance of the
    values (``ddof = 1``). ``s^2`` estimates one seed's whole variance, sampling and training
    alike, without bias; the maximum keeps the estimate from falling below what the samples
    alone give when two seeds happen to agree. One seed: its sampling error only."""
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    sampling = float((torch.tensor([float(x) for x in stderrs], dtype=torch.float64) ** 2).mean())
    spread = float(v.var()) if len(v) > 1 else 0.0
    return (max(sampling, spread) / len(v)) ** 0.5
