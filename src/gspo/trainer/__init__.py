"""The training system: the RL loop, rewards plumbing, checkpoints, metrics and plots."""

from gspo.config import GSPOConfig
from gspo.trainer.reward_runner import RewardError, RewardRunner, load_reward
from gspo.trainer.trainer import GSPOTrainer

__all__ = ["GSPOConfig", "GSPOTrainer", "RewardError", "RewardRunner", "load_reward"]
