"""Synthetic rewards whose tilt of a Gaussian mixture is again a Gaussian mixture.

For a base ``p`` and a reward ``r`` the fine-tuning target is ``p(x) exp(scale r(x)) / Z``.
Linear and (concave) quadratic rewards keep every component Gaussian, so
:meth:`LinearReward.tilt` and :meth:`QuadraticReward.tilt` give that target exactly; the
tilts are computed in float64 and returned in the mixture's dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # a runtime import would close a cycle: am.problems imports these rewards
    from am.problems.gaussian_mixture import GaussianMixture

__all__ = ["Reward", "LinearReward", "QuadraticReward"]


@runtime_checkable
class Reward(Protocol):
    """A differentiable reward: ``reward(x [B, *shape]) -> [B]``."""

    def __call__(self, x: Tensor) -> Tensor: ...


def _as_float(v: Tensor) -> Tensor:
    v = torch.as_tensor(v)
    return v if torch.is_floating_point(v) else v.to(torch.get_default_dtype())


def _reweighted(mixture: GaussianMixture, means: Tensor, covs: Tensor, log_w: Tensor):
    """Build the tilted mixture from float64 pieces; weights normalised in log space so that
    large ``scale`` cannot overflow ``exp``."""
    weights = torch.softmax(log_w, dim=0)
    dtype = mixture.means.dtype
    from am.problems.gaussian_mixture import GaussianMixture

    return GaussianMixture(weights.to(dtype), means.to(dtype), covs.to(dtype))


class LinearReward(nn.Module):
    """``r(x) = c . x`` with ``direction c [D]``; ``x [B, D]`` (or ``[B, *shape]``, flattened)."""

    def __init__(self, direction: Tensor):
        super().__init__()
        direction = _as_float(direction)
        if direction.dim() != 1:
            raise ValueError(f"direction must be [D], got {tuple(direction.shape)}")
        self.register_buffer("direction", direction)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.direction.to(x)

    def tilt(self, mixture: GaussianMixture, scale: float) -> GaussianMixture:
        """Exact ``p(x) exp(scale c.x) / Z``: ``N(mu, S) -> N(mu + scale S c, S)``, log weight
        ``+ scale c.mu + scale^2 c.S.c / 2``."""
        c = self.direction.double()
        if c.shape[0] != mixture.dim:
            raise ValueError(f"reward is {c.shape[0]}-D, mixture is {mixture.dim}-D")
        mu, S = mixture.means.double(), mixture.covs.double()
        Sc = S @ c  # [N, D]
        log_w = torch.log(mixture.weights.double()) + scale * (mu @ c) + 0.5 * scale**2 * (Sc @ c)
        return _reweighted(mixture, mu + scale * Sc, S, log_w)


class QuadraticReward(nn.Module):
    """``r(x) = -(x - m)^T A (x - m) / 2`` with ``center m [D]``, ``precision A [D, D]``
    (symmetric positive semi-definite)."""

    def __init__(self, center: Tensor, precision: Tensor):
        super().__init__()
        center, precision = _as_float(center), _as_float(precision)
        if center.dim() != 1:
            raise ValueError(f"center must be [D], got {tuple(center.shape)}")
        d = center.shape[0]
        precision = precision.to(center)
        if precision.shape != (d, d):
            raise ValueError(f"precision must be [D, D]={[d, d]}, got {list(precision.shape)}")
        scale = max(1.0, precision.abs().max().item())
        tol = 100 * torch.finfo(precision.dtype).eps * scale
        if (precision - precision.mT).abs().max() > tol:
            raise ValueError("precision must be symmetric")
        precision = 0.5 * (precision + precision.mT)
        if torch.linalg.eigvalsh(precision.double()).min() < -1e-10 * scale:
            raise ValueError("precision must be positive semi-definite")
        self.register_buffer("center", center)
        self.register_buffer("precision", precision)

    def forward(self, x: Tensor) -> Tensor:
        diff = x.flatten(1) - self.center.to(x)
        return -0.5 * ((diff @ self.precision.to(x)) * diff).sum(-1)

    def tilt(self, mixture: GaussianMixture, scale: float) -> GaussianMixture:
        """Exact ``p(x) exp(scale r(x)) / Z``. With ``A' = scale A`` and ``P = S^-1 + A'``:
        ``S' = P^-1``, ``mu' = S'(S^-1 mu + A' m)``, log weight
        ``+ 0.5 log(|S'| / |S|) - 0.5 (mu^T S^-1 mu + m^T A' m - mu'^T P mu')``.
        A negative ``scale`` works as long as every ``P`` stays positive definite."""
        m, A = self.center.double(), scale * self.precision.double()
        if m.shape[0] != mixture.dim:
            raise ValueError(f"reward is {m.shape[0]}-D, mixture is {mixture.dim}-D")
        mu, S = mixture.means.double(), mixture.covs.double()
        S_inv = torch.cholesky_inverse(torch.linalg.cholesky(S))
        P = S_inv + A
        L_P, info = torch.linalg.cholesky_ex(P)
        if (info != 0).any():
            raise ValueError(f"tilt with scale={scale} is not normalisable (S^-1 + scale A not PD)")
        S_new = torch.cholesky_inverse(L_P)
        S_new = 0.5 * (S_new + S_new.mT)
        h = (S_inv @ mu[..., None])[..., 0] + A @ m  # [N, D]: the natural parameter of the tilt
        mu_new = (S_new @ h[..., None])[..., 0]
        logdet_S = torch.linalg.slogdet(S)[1]
        logdet_new = -2 * torch.log(torch.diagonal(L_P, dim1=-2, dim2=-1)).sum(-1)
        quad = (mu * (S_inv @ mu[..., None])[..., 0]).sum(-1) + m @ A @ m - (mu_new * h).sum(-1)
        log_w = torch.log(mixture.weights.double()) + 0.5 * (logdet_new - logdet_S) - 0.5 * quad
        return _reweighted(mixture, mu_new, S_new, log_w)
