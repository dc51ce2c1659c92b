"""The exact velocity of every ground-truth problem, as the runs build it (float32, the
eigenbasis rotations of :class:`GaussianMixtureVelocity`), against an independent reference:
``v = kappa x + eta grad log p_t`` with ``p_t`` built by torch.distributions in float64 and its
gradient taken by autograd. The forward is what every rollout step calls, the VJP what every
lean-adjoint step calls; the 10-D problems have anisotropic, rotated covariances, so a wrong
rotation layout (``[D, N*D]``) cannot pass."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from am.problems import GaussianMixture, GaussianMixtureVelocity
from am.problems.benchmarks import PROBLEMS, make_problem
from am.schedules import FlowMatchingSchedule

F64 = torch.float64


def reference_velocity(gm: GaussianMixture, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``kappa x + eta s`` with ``s`` the autograd score of ``p_t`` (differentiable in ``x``)."""
    sv = FlowMatchingSchedule()(t)
    alpha, beta = sv.alpha[:, None, None], sv.beta[:, None, None]
    eye = torch.eye(gm.dim, dtype=F64)
    means = alpha * gm.means.to(F64)  # [B, N, D]
    covs = alpha[..., None] ** 2 * gm.covs.to(F64) + beta[..., None] ** 2 * eye  # [B, N, D, D]
    p_t = MixtureSameFamily(
        Categorical(probs=gm.weights.to(F64).expand(len(x), -1)), MultivariateNormal(means, covs)
    )
    (score,) = torch.autograd.grad(p_t.log_prob(x).sum(), x, create_graph=True)
    return sv.kappa[:, None] * x + sv.eta[:, None] * score


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_exact_velocity_and_its_vjp_match_the_reference(name):
    problem = make_problem(name, FlowMatchingSchedule(), 1.0)
    g = torch.Generator().manual_seed(0)
    n, d = 64, problem.dim
    t = 0.05 + 0.85 * torch.rand(n, generator=g, dtype=F64)  # a different t per row
    x = 2 * torch.randn(n, d, generator=g, dtype=F64)
    a = torch.randn(n, d, generator=g, dtype=F64)
    for gm in (problem.base, problem.target):
        x_ref = x.clone().requires_grad_(True)
        v_ref = reference_velocity(gm, x_ref, t)
        (vjp_ref,) = torch.autograd.grad((v_ref * a).sum(), x_ref)
        vel = GaussianMixtureVelocity(gm, problem.schedule)  # float32, as a run builds it
        x32 = x.float().requires_grad_(True)
        v = vel(x32, t.float())
        (vjp,) = torch.autograd.grad((v * a.float()).sum(), x32)
        for ours, ref in ((v, v_ref), (vjp, vjp_ref)):
            scale = ref.abs().max().item()
            err = (ours.double() - ref.detach()).abs().max().item()
            assert err < 2e-5 * max(scale, 1.0), (name, err, scale)
