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

Each comes with its standard error (over samples for the first three, over classes for the
last two). :func:`tilted_reference` estimates the same quantities for the target
``p_base(x | c) exp(lambda r(x, c)) / Z_c`` from base samples by self-normalised importance
sampling, per class, with the effective sample size (:mod:`am.metrics.importance`); diversity
uses pair weights ``w_i w_j``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from am.diffusion import make_diffusion
from am.metrics import classwise_frechet, grouped_diversity, tilted_expectation
from am.problems.digits_pretrain import DigitsAssets
from am.schedules import FlowMatchingSchedule
from am.sde import sample

__all__ = ["generate", "scores", "tilted_reference"]


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


def _mean_se(v: Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / len(v) ** 0.5)


@torch.no_grad()
def scores(x: Tensor, labels: Tensor, assets: DigitsAssets) -> dict[str, float]:
    """The four columns (and their standard errors) for generations ``x`` of ``labels``."""
    x = x.float()
    out = {}
    for name, v in [
        ("reward", assets.reward(x, labels)),
        ("heldout", _log_p(assets.heldout, x, labels)),
        ("heldout_acc", (assets.heldout(x).argmax(-1) == labels).double()),
    ]:
        out[name], out[name + "_se"] = _mean_se(v.double())
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
    """Importance-sampling estimates of the target's ``reward``, ``heldout``, ``heldout_acc``
    and ``diversity`` from base samples ``x`` of ``labels`` (each class weighted within
    itself), with standard errors over classes combined from the per-class ones, and the
    smallest per-class effective sample size ``ess_min`` (out of ``n_per_class``)."""
    x = x.float()
    r = assets.reward(x, labels).double()
    values = torch.stack(
        [r, _log_p(assets.heldout, x, labels).double(),
         (assets.heldout(x).argmax(-1) == labels).double()], 1,
    )  # fmt: skip
    feats = assets.embedding.features(x).double()
    means, variances, ess, divs = [], [], [], []
    for c in labels.unique():
        rows = labels == c
        est = tilted_expectation(values[rows], log_weights=reward_scale * r[rows])
        means.append(est.mean)
        variances.append(est.stderr**2)
        ess.append(est.ess)
        w = torch.softmax(reward_scale * r[rows], 0)
        pair = w[:, None] * w[None, :]
        pair.fill_diagonal_(0)
        divs.append(float((pair * torch.cdist(feats[rows], feats[rows])).sum() / pair.sum()))
    k = len(means)
    mean, se = torch.stack(means).mean(0), torch.stack(variances).sum(0).sqrt() / k
    divs_t = torch.tensor(divs)
    out = {"reward_scale": reward_scale, "ess_min": min(ess), "n_per_class": int(rows.sum())}
    for i, name in enumerate(["reward", "heldout", "heldout_acc"]):
        out[name], out[name + "_se"] = float(mean[i]), float(se[i])
    out["diversity"], out["diversity_se"] = float(divs_t.mean()), float(divs_t.std() / k**0.5)
    return out
