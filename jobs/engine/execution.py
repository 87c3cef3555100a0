"""Which engine and which arithmetic run a job's model: decided once per job, logged when it falls back.

No Django here. Two precisions: `full` (fp32, demucs' own arithmetic) and `half` (bf16 on CPUs
with AVX512-BF16 or AMX through OpenVINO, bf16 or fp16 autocast on CUDA), offered only where the
hardware runs them natively. Two engines: PyTorch, as the demucs command line runs, and OpenVINO's
CPU runtime for HTDemucs and HDemucs networks (jobs/engine/openvino_runtime.py). `auto` uses OpenVINO for
half precision and PyTorch for full: at fp32 the two were level on whole jobs and OpenVINO held a
second copy of the weights (docs/performance.md); `openvino` uses it for both. Anything that cannot
run as asked runs in PyTorch at full precision, with a log line, never a failed job.
"""

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from demucs.apply import BagOfModels

from jobs.engine import openvino_runtime

logger = logging.getLogger(__name__)

FULL, HALF = "full", "half"
PRECISIONS = (FULL, HALF)
ENGINES = ("auto", "openvino", "torch")
OPENVINO, PYTORCH = "openvino", "pytorch"
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Execution:
    """What apply_model runs (`model`), where, and with which engine and arithmetic."""

    model: torch.nn.Module
    device: str
    engine: str  # OPENVINO or PYTORCH
    arithmetic: str  # "fp32", "bf16" or "fp16"

    def context(self):
        """Autocast for half precision in PyTorch; OpenVINO's arithmetic is compiled in."""
        if self.engine == PYTORCH and self.arithmetic in AUTOCAST_DTYPES:
            device_type = torch.device(self.device).type
            return torch.autocast(device_type=device_type, dtype=AUTOCAST_DTYPES[self.arithmetic])
        return contextlib.nullcontext()


def members(model: torch.nn.Module) -> list[torch.nn.Module]:
    return list(model.models) if isinstance(model, BagOfModels) else [model]


def half_arithmetic(device: str) -> str | None:
    """The half precision this process's hardware runs natively on `device`, or None.

    Asks CUDA on a CUDA device: call it only where a job runs or in a throwaway child process.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if kind != "cpu":
        return None
    if openvino_runtime.installed() and openvino_runtime.cpu_half_arithmetic():
        return "bf16"
    return "bf16" if torch.backends.mkldnn.is_available() and _mkldnn_bf16() else None


def _mkldnn_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def openvino_usable(model: torch.nn.Module, engine: str, device: str) -> bool:
    """Whether OpenVINO may run this model: asked for (or auto), installed, on the CPU, every
    network of a kind the cut knows."""
    if engine == "torch" or torch.device(device).type != "cpu":
        return False
    if not openvino_runtime.installed():
        if engine == "openvino":
            logger.warning("STEMSITE_ENGINE is openvino but the openvino package is not installed")
        return False
    unsupported = [type(m).__name__ for m in members(model) if not openvino_runtime.supports(m)]
    if unsupported and engine == "openvino":
        logger.info("OpenVINO does not run %s networks here; using PyTorch", ", ".join(unsupported))
    return not unsupported


def plan(
    model: torch.nn.Module, precision: str, engine: str, device: str, cache_dir: str | Path, threads: int
) -> Execution:
    """The execution for one job. Converts the model's networks on their first use (cached after)."""
    half = half_arithmetic(device) if precision == HALF else None
    if precision == HALF and half is None:
        logger.info("Half precision was asked for, but this %s has no native half arithmetic: "
                    "running in full precision", torch.device(device).type.upper())  # fmt: skip
    arithmetic = half or "fp32"
    if cache_dir and (engine == "openvino" or half) and openvino_usable(model, engine, device):
        try:
            return _openvino_execution(model, arithmetic, threads, Path(cache_dir), device)
        except (openvino_runtime.ConversionFailed, OSError) as error:  # OSError: the cache folder
            logger.warning("OpenVINO cannot run this model (%s); using PyTorch", error)
    if half and torch.device(device).type == "cpu" and not _mkldnn_bf16():
        logger.info("PyTorch has no native bf16 on this CPU: running in full precision")
        arithmetic = "fp32"
    return Execution(model=model, device=device, engine=PYTORCH, arithmetic=arithmetic)


def _openvino_execution(
    model: torch.nn.Module, arithmetic: str, threads: int, cache_dir: Path, device: str
) -> Execution:
    slot: dict = {}
    runners = [
        openvino_runtime.OpenVINONetwork(
            network, openvino_runtime.convert(network, cache_dir), arithmetic, threads, cache_dir, slot
        )
        for network in members(model)
    ]
    runners[0].load()  # a compile error shows here, while PyTorch can still take over
    executed = BagOfModels(runners, weights=model.weights) if isinstance(model, BagOfModels) else runners[0]
    return Execution(model=executed, device=device, engine=OPENVINO, arithmetic=arithmetic)


def prepare(model: torch.nn.Module, engine: str, device: str, cache_dir: str | Path, threads: int) -> dict:
    """What a worker does at start for its model: convert it and compile it into the cache for every
    precision this hardware offers that OpenVINO would run, so its first job starts warm.

    Returns what the worker reports to the site: the half arithmetic and the engine each precision
    would use.
    """
    half = half_arithmetic(device)
    report = {"device": device, "half": half, "engines": {}}
    for precision, arithmetic in ((FULL, "fp32"), (HALF, half)):
        if arithmetic is None:
            continue
        execution = plan(model, precision, engine, device, cache_dir, threads)
        report["engines"][precision] = {"engine": execution.engine, "arithmetic": execution.arithmetic}
        if execution.engine == OPENVINO:
            for runner in members(execution.model):  # each one's blob into OpenVINO's cache
                runner.load()
                runner.unload()
    return report
