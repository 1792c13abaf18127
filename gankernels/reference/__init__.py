"""Pure-PyTorch twins of every op: the test oracle, the eager baseline of the benchmarks, and the fallback."""
