"""Verifiable rewards for Cascade, as plain functions in TRL's GRPO contract.

Every reward is ``fn(completions, **columns) -> list[float | None]``: it never raises, never hangs,
is picklable and thread-safe, and scores only the text after the last ``</think>``.
``REWARDS`` maps the names recipes use onto those functions (or onto factories that build one from
arguments); modules are imported on first use so that ``import rewards`` stays cheap. ``preflight``
checks a reward's arguments and what it needs of the host (the code sandbox's isolation) up front.
"""

from rewards.registry import REWARDS, RewardSpec, build_reward, describe_rewards, preflight

__all__ = ["REWARDS", "RewardSpec", "build_reward", "describe_rewards", "preflight"]
