"""The config shared by the resume tests and their subprocess worker."""

from saelab.train import TopKConfig

CFG = TopKConfig(
    d_in=16, d_sae=48, k=4, batch_size=64, total_steps=40,
    lr=3e-3, lr_warmup_steps=5, lr_decay_steps=10, dead_tokens_threshold=256, seed=3, device="cpu",
)
