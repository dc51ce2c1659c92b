"""The scorer protocol: input checks, lambda * r, weighted sums, the registry's refusals."""

from __future__ import annotations

import pytest
import torch

from am.vision import SCORERS, Scaled, ScorerInfo, WeightedSum, load_reward, load_scorer
from am.vision.base import ImageScorer, check_images


class Brightness(ImageScorer):
    """A scorer with a closed form: ``k * mean pixel value + len(prompt)``."""

    info = ScorerInfo("brightness", "test", "mean pixel")

    def __init__(self, k: float):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k))
        self.freeze()

    def score(self, images, prompts):
        lengths = torch.tensor([float(len(p)) for p in prompts])
        return self.k * images.mean(dim=(1, 2, 3)) + lengths


def test_check_images_names_the_problem():
    check_images(torch.rand(2, 3, 8, 8), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        check_images(torch.rand(2, 1, 8, 8), ["a", "b"])
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        check_images(torch.rand(2, 3, 8, 8), ["a"])
    with pytest.raises(ValueError, match="sequence of strings"):
        check_images(torch.rand(1, 3, 8, 8), "a")


def test_scaled_and_weighted_sum_by_hand():
    a, b = Brightness(2.0), Brightness(-1.0)
    x, prompts = torch.rand(3, 3, 4, 4, requires_grad=True), ["a", "bb", "ccc"]
    mean, lengths = x.mean(dim=(1, 2, 3)), torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(Scaled(a, 10.0)(x, prompts), 10 * (2 * mean + lengths))
    total = WeightedSum({"a": (a, 0.5), "b": (b, 3.0)})(x, prompts)
    torch.testing.assert_close(total, 0.5 * (2 * mean + lengths) + 3.0 * (-mean + lengths))
    total.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, (0.5 * 2 - 3.0) / 48))
    assert a.k.grad is None and not a.training  # frozen, eval mode even after .train()
    assert not a.train().training
    with pytest.raises(ValueError, match="at least one term"):
        WeightedSum({})


def test_registry_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_WEIGHTS", str(tmp_path))
    with pytest.raises(KeyError, match="hpsv2.0' or 'hpsv2.1"):
        load_scorer("hpsv2")
    with pytest.raises(KeyError, match="unknown scorer"):
        load_scorer("clip_score")
    assert {"clipscore", "pickscore", "hpsv2.0", "hpsv2.1", "imagereward", "aesthetic"} <= set(
        SCORERS
    )
    with pytest.raises(KeyError, match="unknown scorer"):
        load_reward({"imagereward": 100.0, "nope": 1.0})
