"""Rewards: the :class:`Reward` protocol and synthetic rewards with exact tilts."""

from am.rewards.synthetic import LinearReward, QuadraticReward, Reward

__all__ = ["Reward", "LinearReward", "QuadraticReward"]
