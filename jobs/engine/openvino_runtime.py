"""Demucs' networks on OpenVINO's CPU runtime, cut between demucs' STFT and its inverse.

No Django here. A network (HTDemucs or HDemucs) is traced once with its spectral steps stubbed
out, so the graph holds exactly demucs' own layers; it is saved as OpenVINO IR in the engine cache
folder and compiled through OpenVINO's own cache (CACHE_DIR), so a worker pays the conversion only
the first time it meets a model. At run time the STFT, the mask and the inverse STFT stay in
PyTorch, and demucs' apply_model still chunks, shifts and weights the bag: only the network's
forward runs here. Chunks of another length than the converted one (the last chunk of an HDemucs
track) run in PyTorch.
"""

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import torch
from demucs.hdemucs import HDemucs
from demucs.htdemucs import HTDemucs

logger = logging.getLogger(__name__)

ARCHITECTURES = (HTDemucs, HDemucs)
# Bump when the cut changes: every network is then converted again.
CUT_VERSION = 1
XML, RECORD = "network.xml", "record.json"
# OpenVINO's names for the arithmetic a compiled network uses.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class ConversionFailed(Exception):
    """The network could not be converted or compiled; the job runs in PyTorch instead."""


def installed() -> bool:
    """Whether the openvino package is there, without importing it (a worker's parent never does)."""
    return importlib.util.find_spec("openvino") is not None


def supports(network: torch.nn.Module) -> bool:
    return isinstance(network, ARCHITECTURES)


def cpu_half_arithmetic() -> str | None:
    """The half precision OpenVINO's CPU plugin runs natively here: bf16 on CPUs with AVX512-BF16 or
    AMX, else none (it would fall back to f32 silently, so it is not offered)."""
    import openvino

    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else None


def fingerprint(network: torch.nn.Module) -> str:
    """A key for the network's IR: its class, construction, weights and the converter's versions.

    Kept on the module, so a worker's parent computes it once and its work horses inherit it.
    """
    cached = getattr(network, "_stemsite_fingerprint", None)
    if cached:
        return cached
    args, kwargs = getattr(network, "_init_args_kwargs", ((), {}))
    digest = hashlib.sha256()
    identity = [CUT_VERSION, type(network).__qualname__, repr(args), repr(sorted(kwargs.items())),
                version("demucs"), torch.__version__, version("openvino")]  # fmt: skip
    digest.update(json.dumps(identity, default=str).encode())
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(memoryview(tensor.detach().contiguous().numpy()).cast("B"))
    network._stemsite_fingerprint = digest.hexdigest()[:24]
    return network._stemsite_fingerprint


def chunk_length(network: torch.nn.Module) -> int:
    """The samples of one chunk as apply_model cuts them: HTDemucs pads every chunk to this."""
    return int(network.segment * network.samplerate)


def network_folder(cache_dir: Path, network: torch.nn.Module) -> Path:
    return Path(cache_dir) / f"{type(network).__name__.lower()}-{fingerprint(network)}"


def _example(network: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk of noise and its spectrogram input, in the shapes the network is compiled for."""
    generator = torch.Generator().manual_seed(0)
    mix = 0.1 * torch.randn(1, network.audio_channels, chunk_length(network), generator=generator)
    return mix, network._magnitude(network._spec(mix)).contiguous()


class _Cut(torch.nn.Module):
    """The network between the spectrogram and the mask: demucs' own forward, spectral steps stubbed.

    Takes the waveform and its spectrogram input; returns the spectrogram branch's output (what
    `_mask` receives) and the waveform branch's output (what is added to the inverse STFT).
    """

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, mix: torch.Tensor, magnitude: torch.Tensor):
        captured = {}

        def mask(z, estimate):
            captured["spectrogram"] = estimate

        stubs = {
            "_spec": lambda x: None,
            "_magnitude": lambda z: magnitude,
            "_mask": mask,
            "_ispec": lambda z, length=None, scale=0: torch.zeros((), dtype=mix.dtype),
        }
        for name, stub in stubs.items():
            setattr(self.network, name, stub)
        try:
            waveform = self.network(mix)
        finally:
            for name in stubs:
                delattr(self.network, name)
        return captured["spectrogram"], waveform


@contextlib.contextmanager
def _locked(folder: Path):
    """One process converts a network at a time; others wait, then find it done."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def convert(network: torch.nn.Module, cache_dir: Path) -> Path:
    """The network's IR in the cache folder, converting it first if it is not there yet.

    The folder appears whole or not at all (written beside it, then renamed). Raises
    ConversionFailed, with the converter's error logged.
    """
    import openvino

    from jobs.engine.separation import fused_attention

    folder = network_folder(cache_dir, network)
    with _locked(folder):
        if (folder / XML).exists():
            return folder / XML
        logger.info("Converting %s to OpenVINO (once per model; this takes a while)", type(network).__name__)
        started = time.monotonic()
        mix, magnitude = _example(network)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            with torch.no_grad(), fused_attention(True), _quiet_tracer():
                graph = openvino.convert_model(
                    _Cut(network).eval(), example_input=(mix, magnitude),
                    input=[list(mix.shape), list(magnitude.shape)],
                )  # fmt: skip
            openvino.save_model(graph, staging / XML, compress_to_fp16=False)
            record = {
                "mix_shape": list(mix.shape),
                "magnitude_shape": list(magnitude.shape),
                "convert_seconds": round(time.monotonic() - started, 1),
                "openvino": openvino.__version__,
            }
            (staging / RECORD).write_text(json.dumps(record))
            os.replace(staging, folder)
        except Exception as error:
            # The converter raises many kinds of errors (unsupported operators among them); the job
            # goes on in PyTorch either way, with this traceback in the log.
            logger.warning("OpenVINO could not convert %s", type(network).__name__, exc_info=True)
            raise ConversionFailed(str(error)) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("Converted %s in %.0f s", type(network).__name__, time.monotonic() - started)
    return folder / XML


@contextlib.contextmanager
def _quiet_tracer():
    """The tracer warns about every shape read in Python (the shapes are fixed on purpose), and that
    tracing is deprecated: OpenVINO's converter traces; its torch.export path stalls on HDemucs."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
        yield


def compile_network(xml: Path, arithmetic: str, threads: int, cache_dir: Path):
    """Compile the IR for this CPU through OpenVINO's cache: the first compile of each arithmetic
    writes a blob there, later ones (every job) read it back in about a second."""
    import openvino

    core = openvino.Core()
    core.set_property({"CACHE_DIR": str(Path(cache_dir) / "openvino-cache")})
    config = {
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[arithmetic],
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": max(1, threads),
    }
    try:
        return core.compile_model(str(xml), "CPU", config)
    except RuntimeError as error:
        logger.warning("OpenVINO could not compile %s", xml, exc_info=True)
        raise ConversionFailed(str(error)) from error


class OpenVINONetwork(torch.nn.Module):
    """Stands in for a demucs network inside apply_model: same attributes, same output.

    The PyTorch network stays a submodule: its STFT, mask and inverse STFT run here, and chunks
    of another shape than the compiled one run through it unchanged. Members of one bag share a
    `slot`: apply_model runs them one after the other, so only one is compiled at a time.
    """

    def __init__(
        self, network: torch.nn.Module, xml: Path, arithmetic: str, threads: int, cache_dir: Path,
        slot: dict | None = None,
    ):  # fmt: skip
        super().__init__()
        self.network = network
        self.arithmetic = arithmetic
        self.xml, self.threads, self.cache_dir = xml, threads, cache_dir
        self.shape = (1, network.audio_channels, chunk_length(network))
        self._slot = {} if slot is None else slot
        self._request = None
        for name in ("sources", "samplerate", "audio_channels", "segment"):
            setattr(self, name, getattr(network, name))
        if hasattr(network, "valid_length"):
            self.valid_length = network.valid_length

    def load(self) -> None:
        """Compile (from the cache) now rather than at the first chunk."""
        if self._request is None:
            previous = self._slot.get("loaded")
            if previous is not None and previous is not self:
                previous.unload()
            compiled = compile_network(self.xml, self.arithmetic, self.threads, self.cache_dir)
            self._request = compiled.create_infer_request()
            self._slot["loaded"] = self

    def unload(self) -> None:
        """Free the compiled network (its weights and buffers); load() brings it back."""
        self._request = None

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        network = self.network
        if tuple(mix.shape) != self.shape or mix.dtype != torch.float32:
            return network(mix)
        self.load()
        z = network._spec(mix)
        magnitude = network._magnitude(z).contiguous()
        self._request.infer([mix.contiguous().numpy(), magnitude.numpy()], share_inputs=True)
        spectrogram, waveform = (
            torch.from_numpy(self._request.get_output_tensor(index).data.copy()) for index in (0, 1)
        )
        out = network._ispec(network._mask(z, spectrogram), mix.shape[-1])
        return waveform + out if getattr(network, "hybrid", True) else out
