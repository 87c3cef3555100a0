"""The Demucs engine: load and cache models, apply them with progress, encode stems.

Imports torch and demucs, never Django, so the worker, the tests and `bench/` share it as is.
"""

import ctypes
import ctypes.util
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from demucs.apply import BagOfModels, apply_model
from demucs.audio import convert_audio, save_audio
from demucs.pretrained import get_model
from demucs.repo import ModelLoadingError
from huggingface_hub.utils import logging as hub_logging

from jobs.engine import execution

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]
# demucs' own per-chunk report: {"model_idx_in_bag", "shift_idx", "segment_offset", "state", ...}.
ChunkCallback = Callable[[dict], None]


class ModelUnavailable(Exception):
    """The named model cannot be loaded here; the message says what an operator must set."""


@dataclass(frozen=True)
class SeparationOptions:
    shifts: int = 1
    overlap: float = 0.25
    device: str = "cpu"
    # Execution settings that leave demucs' arithmetic alone (bench/separation.py measures them).
    keep_freed_memory: bool = True
    fused_attention: bool = True
    # Precision and engine (jobs/engine/execution.py). The defaults run PyTorch at fp32, as the demucs
    # command line does; OpenVINO needs a cache folder for its converted networks.
    precision: str = "full"
    engine: str = "torch"
    engine_cache_dir: str = ""
    threads: int = 0  # for OpenVINO; 0: torch's own thread count


_models: OrderedDict[tuple[str, str], torch.nn.Module] = OrderedDict()


def load_model(name: str, repo: str = "", cache_size: int = 2) -> torch.nn.Module:
    """The model through demucs' own loader, cached per process so later jobs skip the load.

    The cache keeps the `cache_size` most recently used models; older ones are dropped.
    """
    key = (name, repo)
    if key in _models:
        _models.move_to_end(key)
        return _models[key]
    started = time.monotonic()
    if repo and not Path(repo).is_dir():
        raise ModelUnavailable(
            f"The model folder {repo!r} (STEMSITE_MODEL_REPO) does not exist on the worker."
        )
    # Offline, the hub client would log every retry of a download that cannot work.
    hub_logging.set_verbosity_error()
    try:
        model = get_model(name, repo=Path(repo) if repo else None)
    except (ModelLoadingError, OSError, ValueError) as error:
        where = f"the model folder {repo!r}" if repo else "the internet (no STEMSITE_MODEL_REPO is set)"
        raise ModelUnavailable(
            f"The separation model {name!r} could not be loaded from {where}. Put its files in a "
            "folder and set STEMSITE_MODEL_REPO to it, or give the worker internet access once."
        ) from error
    model.eval()
    _models[key] = model
    while len(_models) > max(1, cache_size):
        _models.popitem(last=False)
    logger.info("Loaded model %s in %.1f s", name, time.monotonic() - started)
    return model


def is_loaded(name: str, repo: str = "") -> bool:
    """Whether load_model would answer from this process's cache."""
    return (name, repo) in _models


def model_sources(model: torch.nn.Module) -> list[str]:
    return list(model.sources)


def plan_execution(model: torch.nn.Module, options: SeparationOptions) -> execution.Execution:
    """The engine and arithmetic that will run this model with these options (jobs/engine/execution.py)."""
    threads = options.threads or torch.get_num_threads()
    return execution.plan(
        model, options.precision, options.engine, options.device, options.engine_cache_dir, threads
    )


def separate(
    model: torch.nn.Module,
    wav: np.ndarray,
    sample_rate: int,
    options: SeparationOptions,
    on_progress: ProgressCallback | None = None,
    plan: execution.Execution | None = None,
    on_chunk: ChunkCallback | None = None,
) -> dict[str, torch.Tensor]:
    """Split `[channels, samples]` audio into `{stem: [2, samples]}` at the model's rate.

    Mirrors demucs.api.Separator.separate_tensor: resample, normalise, apply_model, undo. `plan`
    is what plan_execution returned for this model and options (made here when not given).
    `on_chunk` gets demucs' report as each chunk starts and ends (which model of a bag, which shift).
    """
    plan = plan or plan_execution(model, options)
    mix = convert_audio(torch.from_numpy(wav), sample_rate, model.samplerate, model.audio_channels)
    ref = mix.mean(0)
    mean, std = ref.mean(), ref.std() + 1e-8
    tracker = _ProgressTracker(model, mix.shape[-1], options, on_progress, on_chunk)
    if options.keep_freed_memory:
        keep_freed_memory()
    with torch.inference_mode(), fused_attention(options.fused_attention), plan.context():
        out = apply_model(
            plan.model,
            ((mix - mean) / std)[None],
            shifts=options.shifts,
            overlap=options.overlap,
            split=True,
            device=plan.device,
            callback=tracker,
        )
        out.mul_(std).add_(mean)  # in place: a second copy of every stem would raise the peak
    return dict(zip(model.sources, out[0].cpu(), strict=False))


def two_stems(stems: dict[str, torch.Tensor], stem: str) -> dict[str, torch.Tensor]:
    """One stem and the sum of all others (`no_<stem>`), as `demucs --two-stems` writes them."""
    rest = torch.zeros_like(stems[stem])
    for name, samples in stems.items():
        if name != stem:
            rest += samples
    return {stem: stems[stem], f"no_{stem}": rest}


def encode(
    wav: torch.Tensor,
    path: Path,
    sample_rate: int,
    bits: int = 16,
    as_float: bool = False,
    mp3_bitrate: int = 320,
) -> None:
    """Write one stem with demucs' own encoders; the suffix of `path` picks the container."""
    save_audio(
        wav, str(path), samplerate=sample_rate, bitrate=mp3_bitrate, clip="rescale",
        bits_per_sample=16 if as_float else bits, as_float=as_float,
    )  # fmt: skip


def resolve_device(name: str) -> str:
    """`auto` means CUDA when present. Call it only in the process that separates: asking
    CUDA anything in a worker's parent would break the processes it forks."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def keep_freed_memory() -> None:
    """Stop glibc from mmap-ing, and unmapping on free, every large tensor; once per process.

    Each chunk's forward allocates and frees hundreds of tensors of tens of MB. By default each is
    a fresh mmap whose pages the kernel faults in and zeroes again, about a second of system time
    per 7.8 s chunk of the full model on 2 cores. Kept in the heap, they are reused instead. The
    process then keeps its peak memory: call this only where a job runs (an RQ work horse, which
    exits after the job), never in a worker's parent.
    """
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_malloc_tuned = False


@contextmanager
def fused_attention(enabled: bool = True):
    """Route self-attention through the fused SDPA kernel for the duration, then restore.

    In inference, torch's MultiheadAttention takes a fast path that materialises the full
    2688 x 2688 attention matrix per head in HTDemucs' self-attention; without it, the layers use
    scaled_dot_product_attention as the cross-attention already does. Same maths, ~130 dB SNR.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(previous and not enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


class _ProgressTracker:
    """Turns apply_model's per-chunk callbacks into one 0..1 figure for the whole job."""

    def __init__(
        self,
        model,
        length: int,
        options: SeparationOptions,
        on_progress: ProgressCallback | None,
        on_chunk: ChunkCallback | None = None,
    ):
        self.on_progress = on_progress
        self.on_chunk = on_chunk
        models = len(model.models) if isinstance(model, BagOfModels) else 1
        self.passes = models * max(1, options.shifts)
        self.shifts = max(1, options.shifts)
        segment = float(getattr(model, "max_allowed_segment", None) or model.segment)
        if math.isinf(segment):
            segment = float(model.models[0].segment)
        segment_length = int(model.samplerate * segment)
        stride = max(1, int((1 - options.overlap) * segment_length))
        # With shifts, each pass sees up to half a second more audio than the track.
        padded = length + (int(0.5 * model.samplerate) if options.shifts else 0)
        self.chunks_per_pass = max(1, math.ceil(padded / stride))
        self.done: dict[tuple[int, int], int] = {}

    def __call__(self, info: dict) -> None:
        if self.on_chunk is not None:
            self.on_chunk(info)
        if info.get("state") != "end" or self.on_progress is None:
            return
        key = (info.get("model_idx_in_bag", 0), info.get("shift_idx", 0))
        self.done[key] = self.done.get(key, 0) + 1
        finished = sum(min(count, self.chunks_per_pass) for count in self.done.values())
        self.on_progress(min(1.0, finished / (self.passes * self.chunks_per_pass)))
