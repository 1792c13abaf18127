"""training: losses, loops, EMA, checkpoints, datasets, sample grids."""
