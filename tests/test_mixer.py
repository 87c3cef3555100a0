"""The stem player in Chromium: waveforms before audio, one transport, mute/solo on the gain nodes,
stems started together at one offset, and a page that fits a phone."""

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pytest
import soundfile
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ROOT
from tests.test_browser import CHROMIUM, CHROMIUM_FLAGS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

SCREENSHOTS = Path(os.environ.get("STEMSITE_SCREENSHOTS", ROOT / "var" / "screenshots"))
STEM_TONES = {"drums": 110, "bass": 220, "other": 440, "vocals": 880}
SECONDS = 3.0
PEAKS_PER_SECOND = 50
RATE = 44100


def stem_audio(frequency: float, seconds: float = SECONDS) -> np.ndarray:
    """A tone that swells and fades, so each stem's waveform has a shape of its own."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.2 + 0.7 * np.abs(np.sin(np.pi * t * frequency / 220))
    mono = envelope * np.sin(2 * np.pi * frequency * t)
    return np.stack([mono, mono], axis=1).astype(np.float32)


def peaks_of(audio: np.ndarray) -> list[float]:
    window = RATE // PEAKS_PER_SECOND
    loudest = np.abs(audio).max(axis=1)
    return [round(float(loudest[i : i + window].max()), 3) for i in range(0, len(loudest), window)]


@pytest.fixture(scope="session")
def tone_files(tmp_path_factory) -> Path:
    """The source and four 3 s mp3 stems at different pitches, encoded once for every test here."""
    folder = tmp_path_factory.mktemp("tones")
    soundfile.write(folder / "source.wav", stem_audio(330), RATE)
    for name, frequency in STEM_TONES.items():
        wav = folder / f"{name}.wav"
        soundfile.write(wav, stem_audio(frequency), RATE)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "128k", str(folder / f"{name}.mp3")],
            check=True,
        )
    return folder


@pytest.fixture
def finished_job(owner, tone_files):
    """A succeeded job with the four tone stems, with their peaks."""
    from django.core.files import File

    from jobs.models import Job, Stem

    job = Job(owner=owner, original_name="Four Tones.wav", model_name="htdemucs", status="succeeded")
    job.duration_seconds = SECONDS
    with (tone_files / "source.wav").open("rb") as handle:
        job.input_file.save("Four Tones.wav", File(handle), save=False)
    job.save()
    for position, (name, frequency) in enumerate(STEM_TONES.items()):
        mp3 = tone_files / f"{name}.mp3"
        peaks = peaks_of(stem_audio(frequency))
        stem = Stem(job=job, name=name, position=position, size=mp3.stat().st_size, peaks=peaks)
        with mp3.open("rb") as handle:
            stem.file.save(f"{name}.mp3", File(handle), save=True)
    return job


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    return browser.new_context(viewport={"width": 1100, "height": 900}).new_page()


def state(page) -> dict:
    return page.evaluate("window.stemsiteMixer.state()")


def wait_for(page, condition, what: str, timeout: float = 15) -> dict:
    """Poll the player's state until `condition(state)` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = state(page)
        if seen and condition(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: never happened; last state {seen}")
        page.wait_for_timeout(50)


def open_mixer(page, site, job):
    log_in(page, site)
    page.goto(f"{site}{job.get_absolute_url()}")
    wait_for(page, lambda s: all(s["loaded"].values()) and s["duration"] > 0, "every stem decoded")


def test_waveforms_and_controls_work_before_the_audio_arrives(live_web, owner, finished_job, page):
    held = []
    page.route("**/?play", lambda route: held.append(route))
    log_in(page, live_web)
    page.goto(f"{live_web}{finished_job.get_absolute_url()}")

    canvases = page.locator(".stem canvas")
    expect(canvases).to_have_count(4)
    expected_peaks = str(len(peaks_of(stem_audio(110))))
    for index in range(4):
        expect(canvases.nth(index)).to_have_attribute("data-drawn", expected_peaks)
    inked = canvases.first.evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".filter((v, i) => i % 4 == 3 && v).length"
    )
    assert inked > canvases.first.evaluate("c => c.width"), "the waveform is more than a flat line"
    expect(page.locator(".stem-loading").first).to_contain_text("Loading")
    expect(page.locator("[data-play]")).to_be_disabled()
    page.click(".stem[data-stem=bass] [data-mute]")
    assert state(page)["gains"]["bass"] == 0, "controls work while the audio is still on its way"
    assert not any(state(page)["loaded"].values())

    for route in held:
        route.continue_()
    wait_for(page, lambda s: all(s["loaded"].values()), "every stem decoded")
    expect(page.locator("[data-play]")).to_be_enabled()
    expect(page.locator(".stem-loading").first).to_have_text("")


def test_play_advances_the_clock_and_pause_keeps_the_position(live_web, owner, finished_job, page):
    open_mixer(page, live_web, finished_job)
    assert state(page)["duration"] == pytest.approx(SECONDS, abs=0.1)
    expect(page.locator("[data-duration]")).to_have_text("0:03")

    page.click("[data-play]")
    expect(page.locator("[data-play]")).to_have_attribute("aria-pressed", "true")
    playing = wait_for(page, lambda s: s["playing"] and s["time"] > 0.6, "the clock advancing")
    assert playing["contextState"] == "running"
    assert playing["sources"] == 4

    page.click("[data-play]")
    paused = wait_for(page, lambda s: not s["playing"], "pause")
    assert paused["time"] >= 0.6
    page.wait_for_function(
        "t => window.stemsiteMixer.state().contextTime > t + 0.2", arg=paused["contextTime"]
    )
    assert state(page)["time"] == paused["time"], "the position stays put while paused"

    page.click("[data-play]")
    resumed = wait_for(page, lambda s: s["playing"], "play again")
    assert {start["offset"] for start in resumed["starts"].values()} == {paused["time"]}

    played_out = wait_for(page, lambda s: not s["playing"], "the end of the track", timeout=10)
    assert played_out["time"] == 0, "the track ends and rewinds to the start"


def test_mute_and_solo_set_the_gain_of_every_stem(live_web, owner, finished_job, page):
    open_mixer(page, live_web, finished_job)
    page.click("[data-play]")
    wait_for(page, lambda s: s["playing"], "play")

    def gains_become(expected: dict, what: str) -> None:
        wait_for(
            page,
            lambda s: all(abs(s["gains"][name] - value) < 0.01 for name, value in expected.items()),
            what,
        )

    gains_become({"drums": 1, "bass": 1, "other": 1, "vocals": 1}, "every stem at unity")
    page.click(".stem[data-stem=bass] [data-mute]")
    expect(page.locator(".stem[data-stem=bass] [data-mute]")).to_have_attribute("aria-pressed", "true")
    gains_become({"drums": 1, "bass": 0, "other": 1, "vocals": 1}, "bass muted")

    page.click(".stem[data-stem=vocals] [data-solo]")
    gains_become({"drums": 0, "bass": 0, "other": 0, "vocals": 1}, "vocals soloed")
    page.click(".stem[data-stem=bass] [data-solo]")
    gains_become({"drums": 0, "bass": 0, "other": 0, "vocals": 1}, "a muted solo stays silent")
    page.click(".stem[data-stem=drums] [data-solo]")
    gains_become({"drums": 1, "bass": 0, "other": 0, "vocals": 1}, "two soloed stems")

    page.locator(".stem[data-stem=vocals] [data-volume]").fill("1.5")
    gains_become({"drums": 1, "bass": 0, "other": 0, "vocals": 1.5}, "vocals louder")

    page.click(".stem[data-stem=drums] [data-solo]")
    page.click(".stem[data-stem=vocals] [data-solo]")
    page.click(".stem[data-stem=bass] [data-solo]")
    page.click(".stem[data-stem=bass] [data-mute]")
    gains_become({"drums": 1, "bass": 1, "other": 1, "vocals": 1.5}, "no solo, no mute")

    page.click(".stem[data-stem=other] [data-mute]")
    page.click(".stem[data-stem=drums] [data-solo]")
    page.screenshot(path=SCREENSHOTS / "mixer-muted-and-soloed.png", full_page=True)
    ink = {
        name: page.eval_on_selector(
            f".stem[data-stem={name}] canvas",
            "c => Array.from(c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data)",
        )
        for name in STEM_TONES
    }
    assert ink["drums"] != ink["other"] == ink["bass"] == ink["vocals"], f"silent stems look silent: {ink}"
    fields = page.eval_on_selector("form.export", "form => Object.fromEntries(new FormData(form).entries())")
    assert {key: value for key, value in fields.items() if key[:5] in ("gain_", "mute_", "solo_")} == {
        "gain_drums": "1", "gain_bass": "1", "gain_other": "1", "gain_vocals": "1.5",
        "mute_other": "on", "solo_drums": "on",
    }  # fmt: skip


def test_seeking_starts_every_stem_at_one_time_and_one_offset(live_web, owner, finished_job, page):
    open_mixer(page, live_web, finished_job)
    page.click("[data-play]")
    first = wait_for(page, lambda s: s["playing"] and len(s["starts"]) == 4, "play")
    assert len({(start["when"], start["offset"]) for start in first["starts"].values()}) == 1

    page.eval_on_selector(
        "[data-seek]",
        "bar => { bar.value = '2'; bar.dispatchEvent(new Event('input'));"
        " bar.dispatchEvent(new Event('change')); }",
    )
    seeked = wait_for(page, lambda s: s["starts"]["vocals"]["offset"] == 2, "the seek")
    starts = set((start["when"], start["offset"]) for start in seeked["starts"].values())
    assert len(starts) == 1, f"every stem restarts together: {seeked['starts']}"
    assert seeked["sources"] == 4, "the old sources were stopped, not left playing"
    assert seeked["starts"]["vocals"]["when"] > first["starts"]["vocals"]["when"]
    wait_for(page, lambda s: s["time"] > 2.1, "the clock continuing from the new position")

    page.click("[data-play]")
    wait_for(page, lambda s: not s["playing"], "pause")
    page.locator(".stem[data-stem=drums] .wave").click(position={"x": 1, "y": 10})
    at_start = wait_for(page, lambda s: s["time"] < 0.1, "a click on the waveform seeking")
    assert not at_start["playing"], "seeking while paused does not start playing"


def test_space_toggles_play_except_while_typing(live_web, owner, finished_job, page):
    open_mixer(page, live_web, finished_job)
    page.keyboard.press("Space")
    wait_for(page, lambda s: s["playing"], "space starting playback")
    page.keyboard.press("Space")
    wait_for(page, lambda s: not s["playing"], "space pausing")

    page.evaluate(
        "document.querySelector('form.export')"
        ".append(Object.assign(document.createElement('input'), {id: 'note'}))"
    )
    page.focus("#note")
    page.keyboard.press("Space")
    assert page.input_value("#note") == " "
    assert state(page)["playing"] is False


def test_mixer_fits_a_phone_and_a_desktop(live_web, owner, finished_job, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, viewport in (
        ("desktop", {"width": 1100, "height": 900}),
        ("phone", {"width": 390, "height": 844}),
    ):
        page = browser.new_context(
            viewport=viewport, device_scale_factor=2 if name == "phone" else 1
        ).new_page()
        open_mixer(page, live_web, finished_job)
        page.screenshot(path=SCREENSHOTS / f"mixer-{name}.png", full_page=True)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow == 0, f"{name}: the page is {overflow} px wider than the screen"
        for button in page.locator(".stem button.toggle, [data-play]").all():
            box = button.bounding_box()
            assert box["width"] >= 44, f"{name}: touch target too narrow: {box}"
            assert box["height"] >= 44, f"{name}: touch target too low: {box}"
        page.context.close()


def test_a_pushed_status_block_keeps_the_playing_mixer(live_web, owner, finished_job, page):
    """An export's socket sends the job's status block on connect; the mixer survives the swap."""
    open_mixer(page, live_web, finished_job)
    page.click(".stem[data-stem=bass] [data-mute]")
    page.click("[data-play]")
    before = wait_for(page, lambda s: s["playing"], "play")
    page.evaluate("document.querySelector('[data-mixer]').marked = true")

    page.evaluate(
        """job => {
          const socket = Object.assign(document.createElement('div'), {id: 'listener'});
          socket.setAttribute('hx-ext', 'ws');
          socket.setAttribute('ws-connect', `/ws/jobs/${job}/`);
          document.querySelector('#mix-exports').append(socket);
          document.body.addEventListener('htmx:oobAfterSwap', () => { window.statusSwapped = true; });
          htmx.process(socket);
        }""",
        str(finished_job.pk),
    )
    page.wait_for_function("() => window.statusSwapped === true")
    assert page.evaluate("document.querySelector('[data-mixer]').marked") is True, "the same mixer element"
    after = state(page)
    assert after["playing"] is True
    assert after["starts"] == before["starts"], "playback was not restarted"
    assert after["gains"]["bass"] == 0
    expect(page.locator(".stem[data-stem=bass] [data-mute]")).to_have_attribute("aria-pressed", "true")


def test_export_form_posts_the_mixer_settings_and_shows_the_answer_first(live_web, owner, finished_job, page):
    """The client's half of the export: the form sends the controls' values; the answer goes on top.

    The server's answer is stood in for here (its own tests cover it); the request is the real one.
    """
    sent = []

    def answer(route):
        sent.append(route.request.post_data)
        route.fulfill(
            status=200,
            content_type="text/html",
            body='<div id="export-1" class="mix-export" data-status="queued">Queued</div>',
        )

    page.route(f"**/jobs/{finished_job.pk}/exports/", answer)
    open_mixer(page, live_web, finished_job)
    page.evaluate(
        "document.querySelector('#mix-exports')"
        ".insertAdjacentHTML('beforeend', '<div class=\"mix-export\" id=\"export-0\"></div>')"
    )
    page.click(".stem[data-stem=vocals] [data-mute]")
    page.click(".stem[data-stem=bass] [data-solo]")
    page.locator(".stem[data-stem=bass] [data-volume]").fill("0.25")
    page.select_option("select[name=output_format]", "flac")
    page.click("form.export button[type=submit]")

    expect(page.locator("#mix-exports > .mix-export").first).to_have_attribute("id", "export-1")
    expect(page.locator("#mix-exports > .mix-export")).to_have_count(2)
    fields = dict(parse_qsl(sent[0]))
    assert fields.pop("csrfmiddlewaretoken")
    assert fields == {
        "output_format": "flac",
        "gain_drums": "1", "gain_bass": "0.25", "gain_other": "1", "gain_vocals": "1",
        "mute_vocals": "on", "solo_bass": "on", "tempo": "100", "semitones": "0",
    }  # fmt: skip


def test_export_button_produces_a_downloadable_mix(live_site, owner, finished_job, page):
    """The whole export from the page: the live worker renders it and the link downloads a real file."""
    open_mixer(page, live_site, finished_job)
    page.click(".stem[data-stem=vocals] [data-mute]")
    page.select_option("select[name=output_format]", "wav")
    page.click("form.export button[type=submit]")

    link = page.locator("#mix-exports a.download")
    expect(link).to_be_visible(timeout=90_000)
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "Four Tones - no vocals.wav"
    audio, rate = soundfile.read(download.path(), always_2d=True)
    assert (rate, audio.shape[1]) == (44100, 2)
    assert abs(len(audio) / rate - SECONDS) < 0.1


def test_refused_mix_settings_show_their_sentence_in_the_page(live_web, owner, finished_job, page):
    open_mixer(page, live_web, finished_job)
    page.evaluate("document.querySelector('[data-export-gain=\"bass\"]').value = '5'")
    page.click("form.export button[type=submit]")

    refusal = page.locator("#mix-exports .mix-export[data-status=refused] .error")
    expect(refusal).to_contain_text("bass")
