"""StyleGAN2-ADA's adaptive discriminator augmentation: the pipeline, its presets and the strength controller.

Usage: `pipe = AugmentPipe.from_preset("bgc").to(device)` (NVlabs' default pipeline, p = 1), `pipe.set_p(0.3)`,
then `logits = D(pipe(images))`, differentiable twice with respect to images (R1). AdaController adapts p.
"""

from .controller import AdaController
from .pipe import AUGMENTATIONS, PARAMETERS, AugmentPipe
from .presets import DEFAULT_PRESET, PRESETS, preset

__all__ = ["AugmentPipe", "AdaController", "AUGMENTATIONS", "PARAMETERS", "PRESETS", "DEFAULT_PRESET", "preset"]
