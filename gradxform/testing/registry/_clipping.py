"""Registry entries of the clipping and constraint transformations beyond `clip` and `clip_by_global_norm`."""

from __future__ import annotations

import gradxform as gx
from gradxform.testing.registry._entry import case

ENTRIES: list = [
    case(gx.clip_by_block_rms, {"threshold": 0.5}),
    case(gx.clip_by_block_rms, {"threshold": 5.0}, "loose"),
    case(gx.adaptive_grad_clip, {"clipping": 0.1}, needs_params=True),
    case(gx.adaptive_grad_clip, {"clipping": 0.5, "eps": 0.5}, "eps", needs_params=True),
    case(gx.zero_nans),
    case(gx.keep_params_nonnegative, needs_params=True),
]
