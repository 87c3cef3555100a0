"""Upload validation: every file is probed and fully decoded before any job exists; a link to
import from is checked against the address rule before its job exists, and its download goes
through the same checks (check_upload) once it has arrived."""

import hashlib
from dataclasses import dataclass, replace
from pathlib import PurePosixPath

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm
from django.core.files.uploadedfile import UploadedFile
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from jobs import addresses, practice
from jobs.background.exports import MAX_GAIN, effective_gains
from jobs.capabilities import Capabilities, site_capabilities
from jobs.engine import audio
from jobs.options import (
    FORMATS,
    MODELS,
    MP3_BITRATES,
    PRECISIONS,
    QUALITIES,
    SIX_STEMS,
    JobOptions,
    stem_label,
)
from jobs.sharing.links import EXPIRY_LABELS
from jobs.upload_limits import max_file_bytes

ALLOWED_EXTENSIONS = {"wav", "mp3", "flac", "ogg", "oga", "opus", "m4a", "aac", "aif", "aiff", "webm"}
DECODE_CHECK_TIMEOUT = 120
OPTION_FIELDS = ("model", "quality", "output_format", "mp3_bitrate", "precision")


@dataclass(frozen=True)
class AcceptedFile:
    upload: UploadedFile
    info: audio.AudioInfo
    content_hash: str


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """A list of uploads; each one is judged on its own in UploadForm.clean_files."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = [item for item in (data if isinstance(data, list | tuple) else [data]) if item]
        if not files and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


def _choice_label(title: str, description: str) -> str:
    return format_html('{} <span class="choice-help">{}</span>', title, description)


def _model_label(name: str) -> str:
    model = MODELS[name]
    return _choice_label(model.label, f"{', '.join(model.stems)}. {model.description}")


MSG_CHOOSE_FILE = "Choose an audio file to upload."
MSG_CHOOSE_FILE_OR_LINK = "Choose an audio file to upload, or paste a link to one."
MSG_FILE_AND_LINK = "Upload files or paste a link, not both at once."
MSG_IMPORT_OFF = "Importing from links is turned off on this site. Download the track and upload the file."
LINK_SENTENCES = {
    addresses.INVALID: "This link is not a valid web address.",
    addresses.SCHEME: "The link must start with http:// or https://.",
    addresses.NO_HOST: "The link has no site name in it.",
    addresses.CREDENTIALS: "The link must not contain a user name or password.",
    addresses.UNRESOLVABLE: "The site {host} cannot be found. Check the link.",
    addresses.PRIVATE: (
        "The link points to a private, loopback or reserved address ({address}); "
        "this site only imports from public addresses."
    ),
}
LINK_HELP = {
    "direct": "A direct link to an audio file (ending in .mp3, .wav, .flac, ...).",
    "sites": "A direct link to an audio file, or the page of a track on a site such as a video site.",
}


class UploadForm(forms.Form):
    files = MultipleFileField(
        label="Audio files",
        help_text="WAV, MP3, FLAC, OGG, Opus or M4A/AAC. Choose several to separate them all the same way.",
        required=False,
        widget=MultipleFileInput(attrs={"accept": ",".join(f".{ext}" for ext in sorted(ALLOWED_EXTENSIONS))}),
    )
    url = forms.CharField(
        label="Or a link to a track",
        required=False,
        max_length=2000,
        error_messages={"max_length": "This link is too long (at most %(limit_value)d characters)."},
        widget=forms.URLInput(attrs={"placeholder": "https://", "inputmode": "url"}),
    )
    # Choices, initial values and the precision's presence come from what the workers can run.
    model = forms.ChoiceField(required=False, widget=forms.RadioSelect)
    precision = forms.ChoiceField(required=False, widget=forms.RadioSelect)
    two_stems = forms.ChoiceField(
        label="Stems",
        choices=[("", "All stems the model makes")]
        + [(name, f"{name.capitalize()} + {stem_label('no_' + name)}") for name in SIX_STEMS],
        required=False,
        help_text="Two stems: one instrument and everything else, e.g. vocals and instrumental for karaoke.",
    )
    quality = forms.ChoiceField(
        choices=[(q.name, _choice_label(q.label, q.description)) for q in QUALITIES.values()],
        initial="normal",
        required=False,
        widget=forms.RadioSelect,
    )
    output_format = forms.ChoiceField(
        label="File format",
        choices=[(f.name, f.label) for f in FORMATS.values()],
        initial="mp3",
        required=False,
    )
    mp3_bitrate = forms.TypedChoiceField(
        label="MP3 bitrate",
        choices=[(rate, f"{rate} kbit/s") for rate in MP3_BITRATES],
        coerce=int,
        initial=320,
        empty_value=None,
        required=False,
        help_text="Only used for MP3.",
    )

    def __init__(self, *args, capabilities: Capabilities | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.capabilities = capabilities or site_capabilities()
        if settings.STEMSITE_URL_IMPORT == "off":
            del self.fields["url"]
        else:
            self.fields["url"].help_text = LINK_HELP[settings.STEMSITE_URL_IMPORT]
        offered = self.capabilities.models
        self.fields["model"].choices = [(name, _model_label(name)) for name in offered]
        self.fields["model"].initial = self.capabilities.default_model()
        self.fields["model"].error_messages["invalid_choice"] = (
            f"The model “%(value)s” is not available on this site. Choose one of: {', '.join(offered)}."
            if offered
            else "No model is available on this site right now."
        )
        half = self.capabilities.half_arithmetic
        self.fields["precision"].choices = [
            (name, _choice_label(PRECISIONS[name].label, _precision_help(name, half)))
            for name in self.capabilities.precisions
        ]
        self.fields["precision"].initial = self.capabilities.default_precision()
        self.fields["precision"].error_messages["invalid_choice"] = (
            "Half precision is not available on this site: its workers' hardware has no native "
            "half-precision arithmetic. Use full precision."
        )

    @property
    def offers_precision(self) -> bool:
        """Precision is only a choice where half precision runs natively on the workers."""
        return len(self.capabilities.precisions) > 1

    @property
    def max_bytes(self) -> int:
        """For the page's own check before sending: the same limit the server enforces."""
        return max_file_bytes()

    @property
    def max_files(self) -> int:
        return settings.STEMSITE_MAX_FILES_PER_UPLOAD

    @property
    def import_url(self) -> str:
        """The link to import from, once valid; empty for an upload of files."""
        return self.cleaned_data.get("url", "")

    def clean_files(self) -> list[AcceptedFile]:
        uploads = self.cleaned_data["files"]
        self.accepted, self.rejected = [], []
        importing = "url" in self.fields
        linked = importing and bool(self.data.get("url", "").strip())
        if not uploads:
            if not linked:
                raise forms.ValidationError(MSG_CHOOSE_FILE_OR_LINK if importing else MSG_CHOOSE_FILE)
            return []
        if linked:
            raise forms.ValidationError(MSG_FILE_AND_LINK)
        unavailable = self.capabilities.unavailable
        if unavailable:  # before any file is probed or decoded
            raise forms.ValidationError(f"{unavailable} Nothing was uploaded.")
        limit = settings.STEMSITE_MAX_FILES_PER_UPLOAD
        if len(uploads) > limit:
            raise forms.ValidationError(f"Upload at most {limit} files at once.")
        for upload in uploads:
            try:
                self.accepted.append(check_upload(upload))
            except forms.ValidationError as error:
                prefix = f"{upload.name}: " if len(uploads) > 1 else ""
                self.rejected.append(f"{prefix}{error.messages[0]}")
        if not self.accepted:
            raise forms.ValidationError(self.rejected)
        return self.accepted

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if not url or self.cleaned_data.get("files") or "files" in self.errors:
            return ""  # nothing to import, or files beside it (clean_files says so)
        unavailable = self.capabilities.unavailable
        if unavailable:
            raise forms.ValidationError(f"{unavailable} Nothing was imported.")
        return check_import_url(url)

    def clean(self):
        data = super().clean()
        for name in OPTION_FIELDS:  # left out (a script, an old form): the defaults
            if data.get(name) in (None, ""):
                data[name] = self.fields[name].initial
        stem, model = data.get("two_stems"), data.get("model")
        if stem and model and stem not in MODELS[model].stems:
            self.add_error("two_stems", f"The {MODELS[model].label} model has no {stem} stem.")
        return data

    @property
    def job_options(self) -> JobOptions:
        data = self.cleaned_data
        return JobOptions(
            model=data["model"],
            quality=data["quality"],
            output_format=data["output_format"],
            mp3_bitrate=data["mp3_bitrate"] if data["output_format"] == "mp3" else 320,
            two_stems=data["two_stems"],
            precision=data["precision"],
        )


UPLOAD_FORM_TEMPLATE = "jobs/job_list.html#upload-form"
_CSRF_PLACEHOLDER = "csrf-token-placeholder-7f1c"
_blank_forms: dict[tuple, str] = {}


def blank_upload_form(request) -> SafeString:
    """The unbound upload form as HTML, for the job list: rendered once per process for each set of
    worker capabilities and limits, with only this request's CSRF token put in.

    Every person on a site sees the same blank form, and its widgets were a quarter of the job
    list's rendering time (bench/pages.py). A bound form (one with errors) is rendered afresh.
    """
    capabilities = site_capabilities()
    key = (
        capabilities,
        settings.STEMSITE_MODEL,
        settings.STEMSITE_PRECISION,
        max_file_bytes(),
        settings.STEMSITE_MAX_FILES_PER_UPLOAD,
        settings.STEMSITE_URL_IMPORT,
    )
    html = _blank_forms.get(key)
    if html is None:
        form = UploadForm(capabilities=capabilities)
        html = render_to_string(UPLOAD_FORM_TEMPLATE, {"form": form, "csrf_token": _CSRF_PLACEHOLDER})
        if len(_blank_forms) >= 8:  # capabilities change rarely; never let old ones pile up
            _blank_forms.clear()
        _blank_forms[key] = html
    return mark_safe(html.replace(_CSRF_PLACEHOLDER, get_token(request)))  # noqa: S308 (rendered above)


def _precision_help(name: str, half_arithmetic: str) -> str:
    description = PRECISIONS[name].description
    return f"{description} ({half_arithmetic})" if name == "half" and half_arithmetic else description


def check_import_url(url: str) -> str:
    """The link if the site imports from it: imports are on, http(s), no credentials, a public host
    (the address rule of jobs/addresses.py; the download applies it again to every connection)."""
    if settings.STEMSITE_URL_IMPORT == "off":
        raise forms.ValidationError(MSG_IMPORT_OFF)
    try:
        target = addresses.parse_url(url)
        addresses.public_addresses(target.host, target.port, settings.STEMSITE_TEST_FETCH_ALLOWED)
    except addresses.AddressRefused as refused:
        sentence = LINK_SENTENCES[refused.reason].format(host=refused.host, address=refused.address)
        raise forms.ValidationError(sentence) from None
    return url.strip()


def check_upload(upload: UploadedFile) -> AcceptedFile:
    """Size, extension, magic bytes, container, codec, length and completeness; raises with a sentence.

    The checks run cheapest first, and the decoders only ever see a file whose first bytes
    already say it is audio of a kind ffprobe must then agree on.
    """
    limit_mb = settings.STEMSITE_MAX_UPLOAD_MB
    if upload.size == 0:
        raise forms.ValidationError("The file is empty.")
    if upload.size > limit_mb * 1024 * 1024:
        raise forms.ValidationError(
            f"The file is {upload.size / 1024 / 1024:.0f} MB; the limit is {limit_mb} MB."
        )
    extension = PurePosixPath(upload.name).suffix.lower().lstrip(".")
    if extension not in ALLOWED_EXTENSIONS:
        raise forms.ValidationError(
            "This type of file is not supported. Upload a WAV, MP3, FLAC, OGG, Opus or M4A file."
        )
    path = upload.temporary_file_path()
    try:
        family = audio.sniff_family(path)
        content_hash = _sha256_refusing_markup(path)
        info = audio.probe(path)
        if info.format_name not in audio.FAMILY_FORMATS[family]:
            raise audio.AudioError(audio.MSG_NOT_AUDIO)
        _check_duration(info.duration)
        limit = settings.STEMSITE_MAX_DURATION_SECONDS
        present = audio.check_complete(path, info, max_seconds=limit, timeout=DECODE_CHECK_TIMEOUT)
        if present > limit:
            raise audio.AudioError(f"The track is longer than the limit of {limit / 60:.0f} minutes.")
    except audio.AudioError as error:
        raise forms.ValidationError(str(error)) from None
    return AcceptedFile(upload, replace(info, duration=present), content_hash)


def _check_duration(seconds: float) -> None:
    limit = settings.STEMSITE_MAX_DURATION_SECONDS
    if seconds > limit:
        raise audio.AudioError(
            f"The track is {seconds / 60:.0f} minutes long; the limit is {limit / 60:.0f} minutes."
        )


def _sha256_refusing_markup(path: str) -> str:
    """The file's SHA-256, reading it once; refuses a file with web page markup anywhere in it.

    An audio file followed by HTML plays as audio and renders as a page: such polyglots are
    refused rather than stored.
    """
    digest = hashlib.sha256()
    tail = b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
            if audio.find_markup(tail + block):
                raise audio.AudioError(
                    "This file contains web page code (HTML) besides the audio, so it is not "
                    "accepted. Export the track again from your audio program and upload that."
                )
            tail = block[-audio.MARKUP_WINDOW :]
    return digest.hexdigest()


class SignupForm(UserCreationForm):
    """Email is optional: a self-hosted site may send no mail, but without one a forgotten
    password can only be reset by an administrator. When given, it is unique, so a reset link
    goes to exactly one account."""

    email = forms.EmailField(
        required=False,
        help_text="Optional. Needed to reset a forgotten password by email.",
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip()
        if email and self._meta.model.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email address already exists.")
        return email


def _practice_number(message: str) -> forms.FloatField:
    """A number field whose every refusal is `message` (the API posts through this form too)."""
    return forms.FloatField(required=False, error_messages={"invalid": message})


class MixExportForm(forms.Form):
    """The mixer's settings as the export form posts them: a format, per stem S `gain_S` (0..2, 1
    when absent), `mute_S` and `solo_S`, and the practice settings: `tempo` (percent, 100 when
    absent), `semitones` (0 when absent) and `loop_start` with `loop_end` (seconds) for only the
    loop's span."""

    FORMAT_MESSAGE = "Choose a format for the mix: MP3, WAV or FLAC."

    output_format = forms.ChoiceField(
        choices=[("mp3", "MP3"), ("wav", "WAV"), ("flac", "FLAC")],
        error_messages={"required": FORMAT_MESSAGE, "invalid_choice": FORMAT_MESSAGE},
    )
    tempo = _practice_number(practice.MSG_TEMPO)
    semitones = _practice_number(practice.MSG_SEMITONES)
    loop_start = _practice_number(practice.loop_message(None))
    loop_end = _practice_number(practice.loop_message(None))

    def __init__(self, data, stems, duration: float | None = None):
        super().__init__(data)
        self.duration = duration
        for name in ("loop_start", "loop_end"):
            self.fields[name].error_messages["invalid"] = practice.loop_message(duration)
        self.stems = list(stems)
        for stem in self.stems:
            message = f"The level of {stem.label} must be a number from 0 to 2."
            self.fields[f"gain_{stem.name}"] = forms.FloatField(
                required=False, min_value=0, max_value=MAX_GAIN,
                error_messages={"invalid": message, "min_value": message, "max_value": message},
            )  # fmt: skip
            self.fields[f"mute_{stem.name}"] = forms.BooleanField(required=False)
            self.fields[f"solo_{stem.name}"] = forms.BooleanField(required=False)

    def clean_tempo(self) -> int:
        value = self.cleaned_data["tempo"]
        try:
            return 100 if value is None else practice.check_tempo(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_semitones(self) -> int:
        value = self.cleaned_data["semitones"]
        try:
            return 0 if value is None else practice.check_semitones(value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("loop_start"), data.get("loop_end")
        if "loop_start" in self.errors or "loop_end" in self.errors or (start is None and end is None):
            data["loop"] = None
        elif start is None or end is None:
            self.add_error("loop_end", practice.MSG_LOOP_PAIR)
        else:
            try:
                data["loop"] = practice.check_loop(start, end, self.duration)
            except ValueError as error:
                self.add_error("loop_end", str(error))
        return data

    def practice_settings(self) -> practice.Practice:
        data = self.cleaned_data
        return practice.Practice(data["tempo"], data["semitones"], data["loop"])

    def effective_gains(self) -> dict[str, float]:
        data = self.cleaned_data
        gains = {
            s.name: 1.0 if data[f"gain_{s.name}"] is None else data[f"gain_{s.name}"] for s in self.stems
        }
        muted = {s.name for s in self.stems if data[f"mute_{s.name}"]}
        soloed = {s.name for s in self.stems if data[f"solo_{s.name}"]}
        return effective_gains(gains, muted, soloed)

    def error_sentences(self) -> list[str]:
        return [message for messages in self.errors.values() for message in messages]


class ShareLinkForm(forms.Form):
    """The owner's choices for a new share link (jobs/sharing/links.py)."""

    EXPIRES_MESSAGE = "Choose how long the link works: a day, a week, or until you revoke it."

    expires = forms.ChoiceField(
        choices=list(EXPIRY_LABELS.items()),
        error_messages={"required": EXPIRES_MESSAGE, "invalid_choice": EXPIRES_MESSAGE},
    )
    allow_downloads = forms.BooleanField(required=False)
    show_owner = forms.BooleanField(required=False)

    def error_sentences(self) -> list[str]:
        return [message for messages in self.errors.values() for message in messages]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What the token is for, e.g. “laptop script”.",
        error_messages={"required": "Give the token a name, so you can tell it apart later."},
    )
