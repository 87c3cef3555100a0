"""Tempo, beats and key for jobs: measured by the separation run on the stems it holds in memory,
or later (`manage.py analyse_tracks`) on a finished job's stored stems.

The figures are a help, not the product: a separation whose analysis fails is logged with the
traceback and still succeeds, with the figures left empty.
"""

import logging
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings
from rq.timeouts import JobTimeoutException

from jobs.engine import analysis, audio
from jobs.models import Job

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def analyse_separation(job: Job, stems: "dict[str, torch.Tensor]", rate: int) -> bool:
    """Measure the model's own stems (before a two-stem merge hides the drums) and record the
    figures; False, with the traceback in the log, when the analysis fails."""
    started = time.monotonic()
    try:
        result = analysis.analyse_stems({name: samples.numpy() for name, samples in stems.items()}, rate)
    except JobTimeoutException:
        raise
    except Exception:
        logger.exception("Job %s: tempo and key analysis failed; the job goes on without them", job.pk)
        return False
    job.record_analysis(result.tempo_bpm, result.beats, result.key)
    logger.info("Job %s: %s, measured in %.1f s", job.pk, job.tempo_and_key, time.monotonic() - started)
    return True


def analyse_stored(job: Job) -> analysis.TrackAnalysis:
    """Measure a finished job from its stored stems (decoded at the analysis rate, one channel) and
    record the figures. Raises audio.AudioError when a stem cannot be decoded."""
    limit = (job.duration_seconds or settings.STEMSITE_MAX_DURATION_SECONDS) + 60
    stems = {}
    with tempfile.TemporaryDirectory(prefix="stemsite-analysis-") as workdir:
        for stem in job.stems.all():
            local = Path(workdir) / f"{stem.position}{PurePosixPath(stem.file.name).suffix}"
            with stem.file.open("rb") as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            stems[stem.name], _ = audio.decode(
                str(local), limit, timeout=max(60, limit), sample_rate=analysis.ANALYSIS_RATE, channels=1
            )
            local.unlink()
    result = analysis.analyse_stems(stems, analysis.ANALYSIS_RATE)
    job.record_analysis(result.tempo_bpm, result.beats, result.key)
    return result


def unanalysed_jobs():
    """Finished, successful jobs with stems whose tempo and key were never measured, oldest first."""
    return Job.objects.filter(status=Job.Status.SUCCEEDED, analysed_at__isnull=True).order_by("created_at")
