"""The algorithm: the stages of one PPO update, the trainer that scans them, and pure
evaluation. Nothing here does host I/O."""
