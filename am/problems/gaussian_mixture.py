"""Gaussian-mixture data distributions with an exact flow-matching velocity.

A mixture ``sum_i w_i N(mu_i, S_i)`` pushed along the reference path
``X_t = beta_t X_0 + alpha_t X_1`` (``X_0 ~ N(0, I)``, ``X_1`` from the mixture) stays a
mixture at every ``t``: component ``i`` becomes ``N(alpha mu_i, alpha^2 S_i + beta^2 I)``.
The marginal, its score, ``E[X_1 | X_t]`` and the velocity are therefore closed-form, and
:class:`GaussianMixtureVelocity` is a perfect base model: fine-tuning errors measured on top
of it are the method's own, not the base model's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from am.schedules import Schedule, ScheduleValues

__all__ = ["GaussianMixture", "GaussianMixtureVelocity"]


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """``sum_i weights[i] N(means[i], covs[i])``.

    Shapes: ``weights [N]`` (positive; normalised here), ``means [N, D]``, ``covs [N, D, D]``
    (symmetric positive definite; symmetrised here). All three share ``means``' dtype/device.
    """

    weights: Tensor
    means: Tensor
    covs: Tensor

    def __post_init__(self) -> None:
        means = torch.as_tensor(self.means)
        if not torch.is_floating_point(means):
            means = means.to(torch.get_default_dtype())
        weights = torch.as_tensor(self.weights, dtype=means.dtype, device=means.device)
        covs = torch.as_tensor(self.covs, dtype=means.dtype, device=means.device)
        if means.dim() != 2 or means.shape[0] == 0 or means.shape[1] == 0:
            raise ValueError(f"means must be a non-empty [N, D] tensor, got {tuple(means.shape)}")
        n, d = means.shape
        if weights.shape != (n,):
            raise ValueError(f"weights must have shape [N]={[n]}, got {list(weights.shape)}")
        if covs.shape != (n, d, d):
            raise ValueError(f"covs must have shape [N, D, D]={[n, d, d]}, got {list(covs.shape)}")
        for name, v in (("weights", weights), ("means", means), ("covs", covs)):
            if not torch.isfinite(v).all():
                raise ValueError(f"{name} must be finite")
        if (weights <= 0).any():
            raise ValueError(f"weights must be positive, got {weights.tolist()}")
        # Tolerance relative to the covariance scale and the dtype's precision.
        tol = 100 * torch.finfo(covs.dtype).eps * max(1.0, covs.abs().max().item())
        if (covs - covs.mT).abs().max() > tol:
            raise ValueError("covs must be symmetric")
        covs = 0.5 * (covs + covs.mT)
        info = torch.linalg.cholesky_ex(covs.double()).info
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(f"covs must be positive definite; components {bad} are not")
        object.__setattr__(self, "weights", weights / weights.sum())
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covs", covs)

    @classmethod
    def isotropic(
        cls, means: Tensor, std: float | Tensor, weights: Tensor | None = None
    ) -> GaussianMixture:
        """Components ``N(means[i], std[i]^2 I)``; ``std`` scalar or ``[N]``; uniform weights
        by default."""
        means = torch.as_tensor(means)
        if not torch.is_floating_point(means):
            means = means.to(torch.get_default_dtype())
        if means.dim() != 2:
            raise ValueError(f"means must be [N, D], got {tuple(means.shape)}")
        n, d = means.shape
        std = torch.as_tensor(std, dtype=means.dtype, device=means.device).expand(n)
        if (std <= 0).any():
            raise ValueError(f"std must be positive, got {std.tolist()}")
        eye = torch.eye(d, dtype=means.dtype, device=means.device)
        covs = std[:, None, None] ** 2 * eye
        if weights is None:
            weights = torch.ones(n, dtype=means.dtype, device=means.device)
        return cls(weights=weights, means=means, covs=covs)

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components ``N``."""
        return self.means.shape[0]

    @cached_property
    def _chol(self) -> Tensor:
        """Lower Cholesky factors of ``covs``, ``[N, D, D]`` (cached: the mixture is frozen)."""
        return torch.linalg.cholesky(self.covs)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples ``[n, D]``: a component index per row, then ``mu + L z``."""
        opts = {"dtype": self.means.dtype, "device": self.means.device}
        if n == 0:
            return torch.empty(0, self.dim, **opts)
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, **opts)
        out = torch.empty(n, self.dim, **opts)
        # Loop over components rather than gathering L[idx] ([n, D, D] would not fit for big n).
        for i in range(self.n_components):
            rows = idx == i
            out[rows] = self.means[i] + z[rows] @ self._chol[i].mT
        return out

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log N(x; mu_i, S_i)`` for ``x [B, D]``: ``[B, N]``."""
        L = self._chol.to(x)
        diff = (x[:, None, :] - self.means.to(x)).permute(1, 2, 0)  # [N, D, B]
        y = torch.linalg.solve_triangular(L, diff, upper=False)  # [N, D, B]
        maha = (y**2).sum(1).T  # [B, N]
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # [N]
        return -0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))

    def log_prob(self, x: Tensor) -> Tensor:
        """Mixture log-density at ``x [B, D]``: ``[B]``."""
        return torch.logsumexp(self.component_log_prob(x) + torch.log(self.weights.to(x)), dim=1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities ``p(i | x)`` for ``x [B, D]``: ``[B, N]``, rows sum to 1."""
        return torch.softmax(self.component_log_prob(x) + torch.log(self.weights.to(x)), dim=1)

    def occupancy(self, x: Tensor) -> Tensor:
        """Mean responsibilities of a sample ``x [B, D]``: ``[N]``. For ``x`` drawn from this
        mixture its expectation is exactly ``weights`` (``E_p[p(i|X)] = w_i``), so the distance
        to ``weights`` measures how well another sampler puts mass on the right modes."""
        return self.responsibilities(x).mean(0)

    def mode_error(self, x: Tensor) -> float:
        """Total variation between the occupancy of a sample ``x [B, D]`` and ``weights``: the
        mass the sample puts on the wrong components (0 = right weights; for this mixture's own
        samples, sampling noise)."""
        return 0.5 * float((self.occupancy(x) - self.weights.to(x)).abs().sum())

    def mean(self) -> Tensor:
        """Mixture mean ``[D]``."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance ``[D, D]`` (law of total variance)."""
        m = self.mean()
        second = torch.einsum("n,nij->ij", self.weights, self.covs)
        second = second + torch.einsum("n,ni,nj->ij", self.weights, self.means, self.means)
        return second - torch.outer(m, m)

    def project(self, a: Tensor) -> GaussianMixture:
        """The law of ``x @ a`` for ``x`` from this mixture, ``a [D, K]``: again a mixture, with
        components ``N(a^T mu_i, a^T S_i a)`` and the same weights (``a`` of full column rank,
        else the projected covariances are singular and refused)."""
        a = torch.as_tensor(a, dtype=self.means.dtype, device=self.means.device)
        if a.dim() != 2 or a.shape[0] != self.dim:
            raise ValueError(f"a must be a [D={self.dim}, K] matrix, got {tuple(a.shape)}")
        return GaussianMixture(self.weights, self.means @ a, a.mT @ self.covs @ a)

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> GaussianMixture:
        """A copy with every tensor cast to ``dtype`` / moved to ``device``."""
        return GaussianMixture(
            self.weights.to(dtype=dtype, device=device),
            self.means.to(dtype=dtype, device=device),
            self.covs.to(dtype=dtype, device=device),
        )


class GaussianMixtureVelocity(nn.Module):
    """Exact velocity ``v(x, t) = E[alpha'_t X_1 + beta'_t X_0 | X_t = x]`` of a mixture.

    Each covariance is diagonalised once, ``S_i = U_i diag(lam_i) U_i^T``, so the time-``t``
    component covariance ``alpha^2 S_i + beta^2 I = U_i diag(alpha^2 lam_i + beta^2) U_i^T``
    needs no per-row Cholesky factorisation: every solve is a division in the eigenbasis.
    (This is the Cholesky solve of the brief done in a basis where the factor is diagonal;
    it costs one ``[D, D]`` rotation per row and component.) Per component, with
    ``z = U^T (x - alpha mu)`` and ``d = alpha^2 lam + beta^2``::

        E[X_1 | x, i] = mu + U (alpha lam / d * z)
        E[X_0 | x, i] = U (beta / d * z)
        score_i       = -U (z / d)

    and the mixture quantities average these with the posterior component weights
    ``softmax(log w_i + log N_t,i(x))``. There is no ``1 / alpha``, so the velocity is finite
    at ``t = 0`` and, since ``lam > 0``, at ``t = 1`` (flow matching: ``v(x, 1) = x``,
    ``v(x, 0) = E[X_1] - x``). Schedules with ``beta'`` infinite at ``t = 1`` (VP) give NaN
    there, as the velocity itself is undefined.

    No trainable parameters; everything is a buffer, cast to ``x``'s dtype per call, so the
    same module serves float32 and float64. Differentiable in ``x`` and ``t``.
    """

    def __init__(
        self, mixture: GaussianMixture, schedule: Schedule, *, chunk_elements: int = 2**22
    ):
        super().__init__()
        self.schedule = schedule
        self.dim = mixture.dim
        self.n_components = mixture.n_components
        # Rows per chunk so that a [rows, N, D] intermediate has about chunk_elements entries.
        self.chunk_rows = max(1, chunk_elements // (mixture.n_components * mixture.dim))
        lam, U = torch.linalg.eigh(mixture.covs.double())
        dtype = mixture.means.dtype
        self.register_buffer("log_weights", torch.log(mixture.weights))  # [N]
        self.register_buffer("means", mixture.means.clone())  # [N, D]
        self.register_buffer("eigvals", lam.to(dtype))  # [N, D]
        self.register_buffer("eigvecs", U.to(dtype))  # [N, D, D], columns are eigenvectors
        rot = torch.einsum("nd,nde->ne", mixture.means.double(), U)  # U^T mu
        self.register_buffer("means_rot", rot.to(dtype))  # [N, D]
        # Every component's rotation as one matrix, so that a rotation of the whole batch is
        # one matmul (a per-call einsum costs more than the arithmetic at these sizes):
        # x @ rot_in = [U_1^T x, ..., U_N^T x] and [c_1, ..., c_N] @ rot_out = sum_i U_i c_i.
        n, d = mixture.n_components, mixture.dim
        rot_in = U.permute(1, 0, 2).reshape(d, n * d)  # [D, N*D]
        self.register_buffer("rot_in", rot_in.to(dtype), persistent=False)
        self.register_buffer("rot_out", rot_in.T.contiguous().to(dtype), persistent=False)

    # -- internals ---------------------------------------------------------------------------

    def _prepare(self, x: Tensor, t: Tensor | float) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [B, {self.dim}], got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or [B]={[x.shape[0]]}, got {list(t.shape)}")
        return t

    def _components(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, ScheduleValues]:
        """Per-row, per-component pieces for ``x [B, D]``, ``t [B]``.

        Returns ``logits [B, N]`` (``log w_i + log N_t,i(x)``), ``z [B, N, D]`` (rotated
        centred ``x``), ``d [B, N, D]`` (eigenvalues of the time-``t`` covariance) and the
        schedule values reshaped to ``[B, 1, 1]``.
        """
        sv = self.schedule(t)
        fields = (sv.t, sv.alpha, sv.beta, sv.d_alpha, sv.d_beta)
        sv = ScheduleValues(*(v.reshape(-1, 1, 1) for v in fields))
        lam = self.eigvals.to(x)
        d = sv.alpha**2 * lam + sv.beta**2
        z = (x @ self.rot_in.to(x)).view(-1, self.n_components, self.dim)
        z = z - sv.alpha * self.means_rot.to(x)
        log_norm = -0.5 * ((z**2 / d).sum(-1) + torch.log(d).sum(-1))
        logits = self.log_weights.to(x) + log_norm - 0.5 * self.dim * math.log(2 * math.pi)
        return logits, z, d, sv

    def _chunked(self, fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor) -> Tensor:
        """Apply ``fn`` row-chunk by row-chunk to bound the ``[B, N, D]`` intermediates."""
        if x.shape[0] <= self.chunk_rows:
            return fn(x, t)
        parts = [
            fn(xc, tc)
            for xc, tc in zip(x.split(self.chunk_rows), t.split(self.chunk_rows), strict=True)
        ]
        return torch.cat(parts)

    def _rotate_back(self, w: Tensor, coef: Tensor) -> Tensor:
        """``sum_i w_i U_i coef_i``: ``w [B, N]``, ``coef [B, N, D]`` -> ``[B, D]``."""
        return (w[..., None] * coef).flatten(1) @ self.rot_out.to(coef)

    def _velocity(self, x: Tensor, t: Tensor) -> Tensor:
        logits, z, d, sv = self._components(x, t)
        w = torch.softmax(logits, dim=1)
        coef = (sv.d_alpha * sv.alpha * self.eigvals.to(x) + sv.d_beta * sv.beta) / d * z
        return sv.d_alpha[:, :, 0] * (w @ self.means.to(x)) + self._rotate_back(w, coef)

    def _score(self, x: Tensor, t: Tensor) -> Tensor:
        logits, z, d, _ = self._components(x, t)
        return -self._rotate_back(torch.softmax(logits, dim=1), z / d)

    def _posterior_mean(self, x: Tensor, t: Tensor) -> Tensor:
        logits, z, d, sv = self._components(x, t)
        w = torch.softmax(logits, dim=1)
        coef = sv.alpha * self.eigvals.to(x) / d * z
        return w @ self.means.to(x) + self._rotate_back(w, coef)

    def _marginal_log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.logsumexp(self._components(x, t)[0], dim=1)

    # -- public ------------------------------------------------------------------------------

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Velocity ``[B, D]`` at ``x [B, D]``, ``t [B]`` (or a scalar)."""
        return self._chunked(self._velocity, x, self._prepare(x, t))

    def score(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``grad_x log p_t(x)``: ``[B, D]``."""
        return self._chunked(self._score, x, self._prepare(x, t))

    def posterior_mean(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``E[X_1 | X_t = x]``: ``[B, D]``."""
        return self._chunked(self._posterior_mean, x, self._prepare(x, t))

    def marginal_log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``log p_t(x)``: ``[B]``."""
        return self._chunked(self._marginal_log_prob, x, self._prepare(x, t))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_components={self.n_components}, schedule={self.schedule!r}"
