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
from demucs.demucs import Demucs
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs
from demucs.states import get_state
from demucs.transformer import LayerScale

from jobs.options import FOUR_STEMS, SIX_STEMS

# Small enough to separate a 5 s clip in well under a second on a laptop CPU.
TINY = {
    "htdemucs": {
        "channels": 4,
        "dconv_comp": 2,
        "dconv_depth": 1,
        "bottom_channels": 0,
        "t_layers": 1,
        "t_heads": 2,
    },
    # A short segment keeps the tiny HDemucs quick to trace (the OpenVINO engine's conversion).
    "hdemucs": {"channels": 4, "segment": 8},
    # Demucs v2, waveform only: no site model has it; tests use it as an architecture the
    # OpenVINO engine does not convert.
    "demucs": {"channels": 4, "depth": 4, "segment": 8},
}
# The architectures of the pretrained models, for benchmarks.
FULL = {
    "htdemucs": {
        "dconv_mode": 3,
        "bottom_channels": 512,
        "t_dropout": 0.02,
        "t_sparse_attn_window": 400,
        "multi_freqs": [],
        "segment": Fraction(39, 5),
    },
}
SIZES = {"tiny": TINY, "full": FULL}
# Random weights as initialised, or rescaled to the magnitudes of a trained model (see trained_like).
WEIGHTS = ("random", "trained-like")
ARCHITECTURES = {"htdemucs": HTDemucs, "hdemucs": HDemucs, "demucs": Demucs}

# How each named pretrained model is built: architecture, stems, models in its bag.
NAMED = {
    "htdemucs": ("htdemucs", FOUR_STEMS, 1),
    "htdemucs_ft": ("htdemucs", FOUR_STEMS, 4),
    "htdemucs_6s": ("htdemucs", SIX_STEMS, 1),
    "hdemucs_mmi": ("hdemucs", FOUR_STEMS, 1),
    "mdx_extra": ("hdemucs", FOUR_STEMS, 4),
}


def write_model(
    folder: Path,
    name: str,
    size: str = "tiny",
    sources: list[str] | None = None,
    seed: int = 0,
    arch: str | None = None,
    bag: int | None = None,
    weights: str = "random",
) -> Path:
    """Write `<name>.yaml` (a bag) and one `<sig>-<sha>.th` per model in it; return the first .th.

    A known name (htdemucs_ft, mdx_extra, ...) gets the architecture, stems and bag size of the
    pretrained model of that name unless they are given. `weights="trained-like"` rescales them
    (trained_like) for benchmarks of numerical precision.
    """
    named_arch, named_sources, named_bag = NAMED.get(name, ("htdemucs", FOUR_STEMS, 1))
    arch, sources, bag = arch or named_arch, list(sources or named_sources), bag or named_bag
    if arch not in SIZES[size]:
        raise ValueError(f"There is no {size} {arch} architecture here; use size 'tiny'.")
    folder.mkdir(parents=True, exist_ok=True)
    signatures, paths = [], []
    for index in range(bag):
        torch.manual_seed(seed + index)
        model = ARCHITECTURES[arch](sources=sources, **SIZES[size][arch])
        if weights == "trained-like":
            trained_like(model, seed=seed + index)
        args, kwargs = model._init_args_kwargs
        package = {"klass": type(model), "args": args, "kwargs": kwargs, "state": get_state(model, None)}
        buffer = io.BytesIO()
        torch.save(package, buffer)
        content = buffer.getvalue()
        kind = "" if weights == "random" else "_trained_like"
        signature = f"{name.replace('-', '_')}_{size}{kind}_{index}"
        for old in folder.glob(f"{signature}-*.th"):
            old.unlink()
        path = folder / f"{signature}-{hashlib.sha256(content).hexdigest()[:8]}.th"
        path.write_bytes(content)
        signatures.append(signature)
        paths.append(path)
    description = {"models": signatures}
    if bag == len(sources):
        # Like htdemucs_ft: each model of the bag is trusted for one stem only.
        description["weights"] = [[1.0 if i == j else 0.0 for j in range(len(sources))] for i in range(bag)]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(description))
    return paths[0]


def trained_like(model: torch.nn.Module, seed: int = 0) -> None:
    """Give a random model the magnitudes of a trained one, in place, for measuring precision.

    At initialisation demucs scales every residual branch by a LayerScale of 1e-4 and shrinks the
    convolutions, so rounding errors in those branches barely reach the output and lower precision
    looks harmless. Here every LayerScale is drawn from 0.1..1, and one pass over a noise chunk
    rescales each convolution and linear layer, in the order they run, so its output has unit
    variance, as trained layers roughly do.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, LayerScale):
            module.scale.data = 0.1 + 0.9 * torch.rand(module.scale.shape, generator=generator)

    def to_unit_variance(module, inputs, output):
        std = output.std()
        if not torch.isfinite(std) or std == 0:
            return None
        module.weight.data /= std
        if module.bias is not None:
            module.bias.data /= std
        return output / std

    nn = torch.nn
    layers = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)
    hooks = [m.register_forward_hook(to_unit_variance) for m in model.modules() if isinstance(m, layers)]
    length = int(model.segment * model.samplerate)
    try:
        with torch.no_grad():
            model(0.1 * torch.randn(1, model.audio_channels, length, generator=generator))
    finally:
        for hook in hooks:
            hook.remove()
