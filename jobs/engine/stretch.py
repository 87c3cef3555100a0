"""Tempo and pitch changes of a rendered mix, with the time-stretch the player itself runs.

No Django here. The player stretches in the browser with Signalsmith Stretch; exports run the same
library (python-stretch, its Python binding, MIT), so what a mix export writes is what the player
played. The whole mix goes through one processor, so every stem in it shares one time map and none
can drift, whatever is muted. The output is exactly `samples / tempo` long and aligned with the
input (the library compensates its own latency): 50% tempo always gives twice the duration.
"""

import numpy as np
from python_stretch.Signalsmith import Stretch

# A fixed seed: the same mix and settings give the same samples on every render.
SEED = 1
# As the player's stretch node is set up (static/js/mixer.js, connectStretch): Signalsmith's
# "cheaper" preset, and pitch shifts keep the tonality of what is above 8 kHz (the node's default).
CHEAPER_PRESET = True
TONALITY_HZ = 8000


def stretch(wav: np.ndarray, sample_rate: int, tempo: float, semitones: float) -> np.ndarray:
    """`[channels, samples]` float32 played at `tempo` (1: as is; 0.85: slower) and shifted by
    `semitones`, keeping the other of the two as it was."""
    processor = Stretch(SEED)
    processor.preset(wav.shape[0], float(sample_rate), CHEAPER_PRESET)
    processor.setTimeFactor(tempo)
    processor.setTransposeSemitones(float(semitones), TONALITY_HZ / sample_rate)
    return np.ascontiguousarray(processor.process(np.ascontiguousarray(wav, dtype=np.float32)))
