"""Random-weight Demucs models written in the format demucs' local loader reads.

Tests and offline demos load them through the same `demucs.pretrained.get_model` path as real
weights, so every real step runs; the stems they produce are meaningless.
"""

import hashlib
import io
from fractions import Fraction
from pathlib import Path

import torch
import yaml
from demucs.htdemucs import HTDemucs
from demucs.states import get_state

FOUR_STEMS = ["drums", "bass", "other", "vocals"]
SIX_STEMS = ["drums", "bass", "other", "vocals", "guitar", "piano"]

# Small enough to separate a 5 s clip in well under a second on a laptop CPU.
TINY = {"channels": 4, "dconv_comp": 2, "dconv_depth": 1, "bottom_channels": 0, "t_layers": 1, "t_heads": 2}
# The architecture of the pretrained htdemucs (about 42 M parameters), for benchmarks.
FULL = {
    "dconv_mode": 3,
    "bottom_channels": 512,
    "t_dropout": 0.02,
    "t_sparse_attn_window": 400,
    "multi_freqs": [],
    "segment": Fraction(39, 5),
}
SIZES = {"tiny": TINY, "full": FULL}


def write_model(
    folder: Path, name: str, size: str = "tiny", sources: list[str] | None = None, seed: int = 0
) -> Path:
    """Write `<name>.yaml` (a bag of one) and its `<sig>-<sha>.th`; return the .th path."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HTDemucs(sources=sources or FOUR_STEMS, **SIZES[size])
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None)}
    buffer = io.BytesIO()
    torch.save(package, buffer)
    content = buffer.getvalue()
    signature = f"{name.replace('-', '_')}_{size}"
    for old in folder.glob(f"{signature}-*.th"):
        old.unlink()
    weights = folder / f"{signature}-{hashlib.sha256(content).hexdigest()[:8]}.th"
    weights.write_bytes(content)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({"models": [signature]}))
    return weights
