"""Named ground-truth problems: a Gaussian-mixture base, a reward and its exact tilted target.

Each builder returns a :class:`GroundTruth` record; :data:`PROBLEMS` is the registry the
workflow's problem names come from. All bases are exact (:class:`GaussianMixtureVelocity`), so the
only errors left after fine-tuning are the method's and the discretisation's.

* ``gmm1d_linear``: ``0.5 N(-2, 0.6^2) + 0.5 N(2, 0.6^2)``, ``r(x) = x`` (docs/maths.md;
  the paper's Figure 2 setting).
* ``gmm2d_quadratic``: four components at ``(+-2, +-2)``, std 0.5, unequal weights,
  ``r(x) = -(x - m).A.(x - m) / 2`` with ``m = (1, 0)``, ``A = 0.5 I``.
* ``gmm2d_overlap_quadratic``: the same weights and reward with the components at ``(+-1, +-1)``,
  std 0.5 (neighbours 4 standard deviations apart instead of 8).
* ``gmm10d_quadratic``: four components with fixed random means (seed 0, scale 1.5),
  anisotropic covariances, ``r(x) = -(x - m).A.(x - m) / 2`` with ``A = 0.3 I``, ``m = 0.5 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from am.metrics.distances import noise_floor, sample_distance
from am.problems.gaussian_mixture import GaussianMixture, GaussianMixtureVelocity
from am.rewards.synthetic import LinearReward, QuadraticReward
from am.schedules import Schedule

__all__ = ["GroundTruth", "PROBLEMS", "TargetDistance", "make_problem"]


@dataclass(frozen=True)
class TargetDistance:
    """``distance`` of samples to the exact target (``metric``: ``w1`` in 1-D, ``sliced_w1``
    otherwise), each a mean over ``repeats`` fresh target sets of the samples' size, beside the
    ``noise_floor`` (two independent target sets of that size: the smallest distance a perfect
    model reaches) and the ``base_distance`` (base samples against the target)."""

    metric: str
    distance: float
    noise_floor: float
    base_distance: float

    def __str__(self) -> str:
        return (
            f"{self.metric} to the exact tilt {self.distance:.3f} (noise floor "
            f"{self.noise_floor:.3f}, {self.distance / self.noise_floor:.2f}x; base model "
            f"{self.base_distance:.3f})"
        )


@dataclass(frozen=True)
class GroundTruth:
    """``base``: the data mixture; ``reward``; ``reward_scale`` (lambda); ``target``: the exact
    ``p_base exp(lambda r)``; ``velocity``/``target_velocity``: exact velocities of base and target
    under ``schedule`` (the latter is the optimal fine-tuned velocity ``v*``)."""

    name: str
    base: GaussianMixture
    reward: nn.Module
    reward_scale: float
    target: GaussianMixture
    schedule: Schedule

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def default_metric(self) -> str:
        """The distance a comparison with the target uses unless told otherwise: the exact
        W1 in 1-D, the sliced W1 above (:data:`am.metrics.distances.METRICS`)."""
        return "w1" if self.dim == 1 else "sliced_w1"

    @property
    def velocity(self) -> GaussianMixtureVelocity:
        return GaussianMixtureVelocity(self.base, self.schedule)

    @property
    def target_velocity(self) -> GaussianMixtureVelocity:
        return GaussianMixtureVelocity(self.target, self.schedule)

    def distance_to_target(
        self,
        x: torch.Tensor,
        *,
        repeats: int = 5,
        generator: torch.Generator | None = None,
        metric: str | None = None,
    ) -> TargetDistance:
        """How far samples ``x [n, D]`` are from the exact tilted target, beside the noise
        floor at ``n`` samples (``repeats`` pairs each; see :class:`TargetDistance`), by
        ``metric`` (default :attr:`default_metric`)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [n, {self.dim}], got {list(x.shape)}")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        metric = metric or self.default_metric
        n, x = len(x), x.detach().to(self.target.means.dtype)

        def mean_distance(samples):
            d = [
                sample_distance(
                    samples, self.target.sample(n, generator=g), metric=metric, generator=g
                )
                for _ in range(repeats)
            ]
            return sum(d) / repeats

        return TargetDistance(
            metric=metric,
            distance=mean_distance(x),
            noise_floor=noise_floor(
                self.target.sample, n, metric=metric, generator=g, repeats=repeats
            ),
            base_distance=mean_distance(self.base.sample(n, generator=g)),
        )


def _gmm1d_linear(schedule: Schedule, reward_scale: float) -> GroundTruth:
    base = GaussianMixture.isotropic(torch.tensor([[-2.0], [2.0]]), 0.6)
    reward = LinearReward(torch.tensor([1.0]))
    return GroundTruth(
        "gmm1d_linear", base, reward, reward_scale, reward.tilt(base, reward_scale), schedule
    )


def _gmm2d_quadratic(schedule: Schedule, reward_scale: float) -> GroundTruth:
    means = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
    base = GaussianMixture.isotropic(means, 0.5, weights=torch.tensor([0.4, 0.3, 0.2, 0.1]))
    reward = QuadraticReward(torch.tensor([1.0, 0.0]), 0.5 * torch.eye(2))
    return GroundTruth(
        "gmm2d_quadratic", base, reward, reward_scale, reward.tilt(base, reward_scale), schedule
    )


def _gmm2d_overlap_quadratic(schedule: Schedule, reward_scale: float) -> GroundTruth:
    """``gmm2d_quadratic`` with the modes twice as close: the density midway between neighbours
    is 27 % of a mode's peak instead of 0.07 %, so moving mass between modes is no rare event
    for the lean adjoint (docs/implementation.md)."""
    means = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    base = GaussianMixture.isotropic(means, 0.5, weights=torch.tensor([0.4, 0.3, 0.2, 0.1]))
    reward = QuadraticReward(torch.tensor([1.0, 0.0]), 0.5 * torch.eye(2))
    return GroundTruth(
        "gmm2d_overlap_quadratic",
        base,
        reward,
        reward_scale,
        reward.tilt(base, reward_scale),
        schedule,
    )


def _random_10d_problem(
    name: str, schedule: Schedule, reward_scale: float, *, mean_scale: float, eig: tuple
) -> GroundTruth:
    """Four equally weighted modes in 10-D: means ``mean_scale * randn``, anisotropic covariances
    (random rotations, eigenvalues uniform in ``eig``); reward ``-(x - 0.5)^T (0.3 I) (x - 0.5) / 2``.
    """
    g = torch.Generator().manual_seed(0)
    D, N = 10, 4
    means = mean_scale * torch.randn(N, D, generator=g)
    q, _ = torch.linalg.qr(torch.randn(N, D, D, generator=g))
    lam = eig[0] + (eig[1] - eig[0]) * torch.rand(N, D, generator=g)
    covs = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    covs = 0.5 * (covs + covs.transpose(-1, -2))
    base = GaussianMixture(torch.full((N,), 1.0 / N), means, covs)
    reward = QuadraticReward(torch.full((D,), 0.5), 0.3 * torch.eye(D))
    return GroundTruth(name, base, reward, reward_scale, reward.tilt(base, reward_scale), schedule)


def _gmm10d_quadratic(schedule: Schedule, reward_scale: float) -> GroundTruth:
    """Separated modes (closest pair 10 standard deviations apart): moving mass between them is
    a rare-event problem for the lean adjoint (docs/implementation.md)."""
    return _random_10d_problem(
        "gmm10d_quadratic", schedule, reward_scale, mean_scale=1.5, eig=(0.1, 0.5)
    )


def _gmm10d_overlap_quadratic(schedule: Schedule, reward_scale: float) -> GroundTruth:
    """Overlapping modes (closest pair 1.9 standard deviations apart): the tilt still moves mode
    weights (0.25 each -> 0.21-0.28) but no path has to cross a low-density gap, so the lean
    adjoint has no rare-event tail (docs/implementation.md)."""
    return _random_10d_problem(
        "gmm10d_overlap_quadratic", schedule, reward_scale, mean_scale=0.4, eig=(0.3, 1.0)
    )


PROBLEMS: dict[str, Callable[[Schedule, float], GroundTruth]] = {
    "gmm1d_linear": _gmm1d_linear,
    "gmm2d_quadratic": _gmm2d_quadratic,
    "gmm2d_overlap_quadratic": _gmm2d_overlap_quadratic,
    "gmm10d_quadratic": _gmm10d_quadratic,
    "gmm10d_overlap_quadratic": _gmm10d_overlap_quadratic,
}


def make_problem(name: str, schedule: Schedule, reward_scale: float = 1.0) -> GroundTruth:
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid: {sorted(PROBLEMS)}")
    return PROBLEMS[name](schedule, float(reward_scale))
