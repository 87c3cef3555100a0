"""What people can choose for a separation, and the one mapping from those choices to demucs.

No Django here: the form, the worker, the timeout and the benchmarks all read these tables.
"""

from dataclasses import dataclass

FOUR_STEMS = ("drums", "bass", "other", "vocals")
SIX_STEMS = (*FOUR_STEMS, "guitar", "piano")


@dataclass(frozen=True)
class ModelChoice:
    name: str
    label: str
    stems: tuple[str, ...]
    cost: float  # time relative to htdemucs
    description: str


MODELS = {
    choice.name: choice
    for choice in (
        ModelChoice(
            "htdemucs", "Hybrid Transformer Demucs", FOUR_STEMS, 1.0,
            "The default: good quality, fastest.",
        ),
        ModelChoice(
            "htdemucs_ft", "Fine-tuned Hybrid Transformer", FOUR_STEMS, 4.0,
            "A bag of four fine-tuned models: a little cleaner, about 4x slower.",
        ),
        ModelChoice(
            "htdemucs_6s", "Six stems", SIX_STEMS, 1.0,
            "Adds guitar and piano; piano is still rough.",
        ),
        ModelChoice(
            "hdemucs_mmi", "Hybrid Demucs v3", FOUR_STEMS, 0.8,
            "The previous generation, trained on extra data; a little faster.",
        ),
        ModelChoice(
            "mdx_extra", "Demucs MDX extra", FOUR_STEMS, 4.0,
            "A bag of four models from the MDX challenge; about 4x slower.",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Quality:
    name: str
    label: str
    shifts: int
    overlap: float
    cost: float  # time relative to "normal"
    description: str


QUALITIES = {
    quality.name: quality
    for quality in (
        Quality("fast", "Fast", 0, 0.25, 0.9, "One pass over the track."),
        Quality(
            "normal", "Normal", 1, 0.25, 1.0,
            "One pass at a random small time offset, as the demucs command line does.",
        ),
        Quality(
            "best", "Best", 4, 0.5, 8.0,
            "Four passes at different offsets, averaged, with more overlap between segments: "
            "slightly cleaner, about 8x slower.",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Precision:
    """The arithmetic a separation runs in. Not a quality preset: "fast" there means fewer passes."""

    name: str
    label: str
    cost: float  # time relative to full, where the hardware runs half natively
    description: str


PRECISIONS = {
    precision.name: precision
    for precision in (
        Precision(
            "full", "Full precision", 1.0,
            "32-bit floats, as the demucs command line computes: the same stems it makes.",
        ),
        Precision(
            "half", "Half precision", 0.5,
            "About twice as fast; differences from full precision are far smaller than what the "
            "model itself gets wrong.",
        ),
    )
}  # fmt: skip
# How the arithmetic and engine a job ran with are named on its page.
ARITHMETIC_LABELS = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16"}
ENGINE_LABELS = {"openvino": "OpenVINO", "pytorch": "PyTorch"}


@dataclass(frozen=True)
class OutputFormat:
    name: str
    label: str
    extension: str
    bits: int = 16
    as_float: bool = False
    lossless: bool = True


FORMATS = {
    fmt.name: fmt
    for fmt in (
        OutputFormat("mp3", "MP3", "mp3", lossless=False),
        OutputFormat("wav16", "WAV, 16-bit", "wav", bits=16),
        OutputFormat("wav24", "WAV, 24-bit", "wav", bits=24),
        OutputFormat("wav32f", "WAV, 32-bit float", "wav", bits=32, as_float=True),
        OutputFormat("flac", "FLAC, 24-bit", "flac", bits=24),
    )
}
MP3_BITRATES = (128, 160, 192, 256, 320)


@dataclass(frozen=True)
class JobOptions:
    """A job's choices, stored on the job as JSON and read back by the worker."""

    model: str = "htdemucs"
    quality: str = "normal"
    output_format: str = "mp3"
    mp3_bitrate: int = 320
    two_stems: str = ""  # a stem name: that stem and everything else, e.g. vocals / no_vocals
    precision: str = "full"

    @classmethod
    def from_dict(cls, data: dict) -> "JobOptions":
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}

    @property
    def model_choice(self) -> ModelChoice:
        return MODELS[self.model]

    @property
    def quality_choice(self) -> Quality:
        return QUALITIES[self.quality]

    @property
    def format_choice(self) -> OutputFormat:
        return FORMATS[self.output_format]

    @property
    def precision_choice(self) -> Precision:
        return PRECISIONS.get(self.precision, PRECISIONS["full"])

    @property
    def stem_names(self) -> tuple[str, ...]:
        if self.two_stems:
            return (self.two_stems, f"no_{self.two_stems}")
        return self.model_choice.stems

    @property
    def cost(self) -> float:
        """Expected separation time relative to htdemucs at normal quality."""
        return self.model_choice.cost * self.quality_choice.cost

    def describe(self) -> str:
        parts = [self.model, self.quality_choice.label.lower()]
        if self.precision != "full":
            parts.insert(1, self.precision_choice.label.lower())
        if self.two_stems:
            parts.append(f"{self.two_stems} + rest")
        fmt = self.format_choice
        parts.append(f"{fmt.label} {self.mp3_bitrate} kbit/s" if fmt.name == "mp3" else fmt.label)
        return " · ".join(parts)


def stem_label(name: str) -> str:
    """How a stem is called on the page: no_vocals reads as 'Everything but vocals'."""
    if name.startswith("no_"):
        return "instrumental" if name == "no_vocals" else f"everything but {name[3:]}"
    return name
