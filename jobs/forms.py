"""Upload validation: the file is probed and fully decoded before any job exists."""

from pathlib import PurePosixPath

from django import forms
from django.conf import settings
from django.contrib.auth.forms import UserCreationForm

from jobs import audio

ALLOWED_EXTENSIONS = {"wav", "mp3", "flac", "ogg", "oga", "opus", "m4a", "aac", "aif", "aiff", "webm"}
DECODE_CHECK_TIMEOUT = 120


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Audio file",
        help_text="WAV, MP3, FLAC, OGG, Opus or M4A/AAC.",
        error_messages={"empty": "The file is empty.", "required": "Choose an audio file to upload."},
        widget=forms.ClearableFileInput(
            attrs={"accept": ",".join(f".{ext}" for ext in sorted(ALLOWED_EXTENSIONS))}
        ),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
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
            info = audio.probe(path)
            limit = settings.STEMSITE_MAX_DURATION_SECONDS
            if info.duration > limit:
                minutes, allowed = info.duration / 60, limit / 60
                raise audio.AudioError(
                    f"The track is {minutes:.0f} minutes long; the limit is {allowed:.0f} minutes."
                )
            audio.check_complete(path, info, timeout=DECODE_CHECK_TIMEOUT)
        except audio.AudioError as error:
            raise forms.ValidationError(str(error)) from None
        self.audio_info = info
        return upload


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        fields = ("username",)
