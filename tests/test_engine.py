"""The engine: OpenVINO runs demucs' networks with PyTorch's output, half precision drifts within
what the benchmark measured, and anything that cannot run as asked runs in PyTorch instead."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jobs.engine import execution, openvino_runtime, separation
from jobs.engine.testmodel import write_model
from tests.conftest import tone

pytestmark = pytest.mark.database_agnostic

# Half vs full precision, lowest stem, in `bench/separation.py --sections drift` (full-size htdemucs,
# the bench mix; docs/performance.md): what the tiny models must stay within, less a margin.
BENCH_HALF_SNR_DB = {"random": 43.9, "trained-like": 21.8}
MARGIN_DB = 6.0


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    reference, estimate = reference.double(), estimate.double()
    return float(10 * torch.log10((reference**2).sum() / ((reference - estimate) ** 2).sum()))


def noise(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal((2, int(44100 * seconds)))).astype(np.float32)


def options(engine: str, cache: Path | str = "", precision: str = "full") -> separation.SeparationOptions:
    return separation.SeparationOptions(
        shifts=0, engine=engine, engine_cache_dir=str(cache), precision=precision, threads=1
    )


def assert_matches_pytorch(model, wav: np.ndarray, cache: Path) -> None:
    plan = separation.plan_execution(model, options("openvino", cache))
    assert (plan.engine, plan.arithmetic) == ("openvino", "fp32")

    reference = separation.separate(model, wav, 44100, options("torch"))
    stems = separation.separate(model, wav, 44100, options("openvino", cache), plan=plan)

    assert list(stems) == list(reference)
    for stem, samples in reference.items():
        assert stems[stem].shape == samples.shape
        assert snr_db(samples, stems[stem]) > 60, stem


@pytest.mark.slow
@pytest.mark.parametrize(("name", "seconds"), [("htdemucs", 14), ("htdemucs_6s", 4), ("hdemucs_mmi", 19.3)])
def test_full_precision_through_openvino_matches_pytorch(model_repo, engine_cache, name, seconds):
    """HTDemucs with four and six stems, and HDemucs, whose 19.3 s here end on a shorter chunk that
    runs in PyTorch."""
    assert_matches_pytorch(separation.load_model(name, str(model_repo)), noise(seconds), engine_cache)


@pytest.mark.slow
def test_a_bag_through_openvino_matches_pytorch(model_repo, engine_cache, tmp_path):
    """Four networks weighted per stem, as htdemucs_ft and mdx_extra are; one compiled at a time.
    Its members repeat one network so that only one conversion is needed."""
    [network] = model_repo.glob("htdemucs_tiny_0-*.th")
    shutil.copy(network, tmp_path)
    signature = network.stem.rsplit("-", 1)[0]
    weights = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    (tmp_path / "bag.yaml").write_text(yaml.safe_dump({"models": [signature] * 4, "weights": weights}))
    model = separation.load_model("bag", str(tmp_path))

    assert_matches_pytorch(model, noise(4), engine_cache)


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["random", "trained-like"])
def test_half_precision_drift_stays_within_what_the_bench_measured(tmp_path, weights):
    """PyTorch's bf16 autocast (the CUDA path's code, run on the CPU here) against fp32."""
    write_model(tmp_path, "htdemucs", weights=weights)
    model = separation.load_model("htdemucs", str(tmp_path))
    wav = noise(6)
    full = separation.separate(model, wav, 44100, options("torch"))
    half_plan = execution.Execution(model=model, device="cpu", engine=execution.PYTORCH, arithmetic="bf16")
    half = separation.separate(model, wav, 44100, options("torch"), plan=half_plan)

    drift = min(snr_db(full[stem], half[stem]) for stem in full)
    assert drift > BENCH_HALF_SNR_DB[weights] - MARGIN_DB
    assert drift < 90, "bf16 arithmetic must show; an fp32 run would match to ~130 dB"


@pytest.mark.skipif(
    not (openvino_runtime.installed() and openvino_runtime.cpu_half_arithmetic()),
    reason="this CPU has no native bf16 (AVX512-BF16 or AMX), so half precision is not offered here",
)
def test_half_precision_through_openvino_drifts_within_the_bound(model_repo, engine_cache):
    model = separation.load_model("htdemucs", str(model_repo))
    wav = noise(6)
    plan = separation.plan_execution(model, options("auto", engine_cache, precision="half"))
    assert (plan.engine, plan.arithmetic) == ("openvino", "bf16")
    full = separation.separate(model, wav, 44100, options("torch"))
    half = separation.separate(model, wav, 44100, options("auto", engine_cache, "half"), plan=plan)
    assert min(snr_db(full[stem], half[stem]) for stem in full) > BENCH_HALF_SNR_DB["random"] - MARGIN_DB


def test_half_precision_without_native_hardware_runs_in_full(model_repo, engine_cache, caplog):
    model = separation.load_model("htdemucs", str(model_repo))
    plan = separation.plan_execution(model, options("torch", engine_cache, precision="half"))
    if execution.half_arithmetic("cpu") is None:
        assert plan.arithmetic == "fp32"
        assert "running in full precision" in caplog.text
    else:
        assert plan.arithmetic == "bf16"


def test_a_cache_folder_that_cannot_be_written_falls_back_to_pytorch(model_repo, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    model = separation.load_model("htdemucs", str(model_repo))

    plan = separation.plan_execution(model, options("openvino", blocked / "engine"))

    assert (plan.engine, plan.arithmetic) == ("pytorch", "fp32")
    assert "using PyTorch" in caplog.text
    stems = separation.separate(model, tone(2).T.copy(), 44100, options("openvino", blocked), plan=plan)
    assert set(stems) == {"drums", "bass", "other", "vocals"}


@pytest.mark.slow
def test_a_damaged_converted_network_falls_back_to_pytorch(model_repo, engine_cache, tmp_path, caplog):
    model = separation.load_model("htdemucs", str(model_repo))
    [network] = execution.members(model)
    converted = openvino_runtime.convert(network, engine_cache).parent
    damaged = shutil.copytree(converted, tmp_path / converted.name)
    xml = damaged / openvino_runtime.XML
    xml.write_text(xml.read_text()[:200])  # cut off, as a full disk would leave it

    plan = separation.plan_execution(model, options("openvino", tmp_path))

    assert plan.engine == "pytorch"
    assert "could not compile" in caplog.text


def test_models_of_other_architectures_run_in_pytorch(tmp_path):
    """Demucs v2 networks have no STFT to cut at: they are not converted at all."""
    write_model(tmp_path, "demucs_v2", arch="demucs")
    model = separation.load_model("demucs_v2", str(tmp_path))
    plan = separation.plan_execution(model, options("auto", tmp_path / "engine"))
    assert plan.engine == "pytorch"
    assert not (tmp_path / "engine").exists()


def test_auto_runs_full_precision_in_pytorch_and_half_on_openvino(model_repo, engine_cache):
    """At fp32 the engines were level on whole jobs and OpenVINO held a second copy of the weights
    (docs/performance.md), so `auto` converts nothing for full precision."""
    model = separation.load_model("htdemucs", str(model_repo))
    cache = engine_cache / "auto"
    full = separation.plan_execution(model, options("auto", cache))
    assert (full.engine, full.arithmetic) == ("pytorch", "fp32")
    half = separation.plan_execution(model, options("auto", cache, precision="half"))
    if execution.half_arithmetic("cpu"):
        assert (half.engine, half.arithmetic) == ("openvino", "bf16")
    else:
        assert (half.engine, half.arithmetic) == ("pytorch", "fp32")
        assert not cache.exists(), "nothing is converted that will not run"
