"""The public functional API. Each op validates its arguments, picks a backend and runs a torch custom op."""

from .bias_act import bias_act, fused_leaky_relu

__all__ = ["bias_act", "fused_leaky_relu"]
