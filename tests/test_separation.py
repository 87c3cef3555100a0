"""The Demucs engine on its own: real loader, real apply_model, real encoders."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from jobs.engine import separation
from jobs.engine.testmodel import SIX_STEMS, write_model
from tests.conftest import tone

pytestmark = pytest.mark.database_agnostic


def test_model_loads_through_demucs_local_repo_and_is_cached(model_repo):
    model = separation.load_model("htdemucs", str(model_repo))
    assert separation.model_sources(model) == ["drums", "bass", "other", "vocals"]
    assert separation.load_model("htdemucs", str(model_repo)) is model


def test_six_stem_model(tmp_path):
    write_model(tmp_path, "htdemucs_6s", sources=SIX_STEMS)
    model = separation.load_model("htdemucs_6s", str(tmp_path))
    assert separation.model_sources(model) == list(SIX_STEMS)


def test_missing_folder_or_name_is_model_unavailable(model_repo, tmp_path):
    with pytest.raises(separation.ModelUnavailable, match="does not exist"):
        separation.load_model("htdemucs", str(tmp_path / "nowhere"))
    with pytest.raises(separation.ModelUnavailable, match="STEMSITE_MODEL_REPO"):
        separation.load_model("mdx_extra_q", str(model_repo))


@pytest.mark.slow
def test_separation_is_deterministic_without_shifts_and_reports_progress(model_repo):
    model = separation.load_model("htdemucs", str(model_repo))
    wav = tone(12, rate=44100).T.copy()
    reports = []
    options = separation.SeparationOptions(shifts=0)
    first = separation.separate(model, wav, 44100, options, reports.append)
    second = separation.separate(model, wav, 44100, options)

    assert set(first) == {"drums", "bass", "other", "vocals"}
    for name, samples in first.items():
        assert tuple(samples.shape) == (2, wav.shape[1])
        assert np.array_equal(samples.numpy(), second[name].numpy())
    assert len(reports) >= 2
    assert reports == sorted(reports)
    assert reports[-1] == pytest.approx(1.0)


def test_resamples_and_upmixes_to_the_model_format(model_repo):
    model = separation.load_model("htdemucs", str(model_repo))
    stems = separation.separate(
        model, tone(2, rate=22050, channels=1).T.copy(), 22050, separation.SeparationOptions()
    )
    assert tuple(stems["vocals"].shape) == (2, 88200)


@pytest.mark.parametrize("suffix", ["mp3", "wav", "flac"])
def test_encoded_stem_is_readable_audio(model_repo, tmp_path, suffix):
    model = separation.load_model("htdemucs", str(model_repo))
    stems = separation.separate(model, tone(2).T.copy(), 44100, separation.SeparationOptions(shifts=0))
    path = Path(tmp_path) / f"vocals.{suffix}"
    separation.encode(stems["vocals"], path, model.samplerate)
    info = soundfile.info(path)
    assert (info.samplerate, info.channels) == (44100, 2)
    assert info.duration == pytest.approx(2, abs=0.06)


def test_model_cache_is_bounded(model_repo):
    first = separation.load_model("hdemucs_mmi", str(model_repo), cache_size=1)
    separation.load_model("htdemucs_6s", str(model_repo), cache_size=1)
    assert separation.load_model("hdemucs_mmi", str(model_repo), cache_size=1) is not first


def test_two_stems_sums_the_rest(model_repo):
    model = separation.load_model("htdemucs", str(model_repo))
    stems = separation.separate(model, tone(1).T.copy(), 44100, separation.SeparationOptions(shifts=0))
    pair = separation.two_stems(stems, "drums")
    assert list(pair) == ["drums", "no_drums"]
    expected = stems["bass"] + stems["other"] + stems["vocals"]
    assert np.allclose(pair["no_drums"].numpy(), expected.numpy(), atol=1e-6)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = ((reference.astype(np.float64) - estimate) ** 2).sum()
    return float("inf") if noise == 0 else 10 * np.log10((reference.astype(np.float64) ** 2).sum() / noise)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["htdemucs", "htdemucs_ft"])
def test_execution_settings_keep_demucs_output(model_repo, name):
    model = separation.load_model(name, str(model_repo))
    wav = tone(20).T.copy()
    plain = separation.SeparationOptions(shifts=0, keep_freed_memory=False, fused_attention=False)
    tuned = separation.SeparationOptions(shifts=0)
    reference = separation.separate(model, wav, 44100, plain)
    result = separation.separate(model, wav, 44100, tuned)
    for stem, samples in reference.items():
        assert snr_db(samples.numpy(), result[stem].numpy()) > 60


def test_fused_attention_restores_torch_setting():
    before = torch.backends.mha.get_fastpath_enabled()
    with separation.fused_attention():
        assert torch.backends.mha.get_fastpath_enabled() is False
    assert torch.backends.mha.get_fastpath_enabled() is before
