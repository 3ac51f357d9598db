"""Cascade: cascaded post-training (SFT → reward model → RLHF → domain-wise RL) with regression gates."""

__version__ = "0.1.0"
