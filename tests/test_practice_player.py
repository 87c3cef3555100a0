"""The practice player in Chromium: tempo with the clock following the stretched audio, the A-B loop
and its keys, stems that stay aligned through tempo changes and seeks, the click and the count-in,
and settings that come back when the page is opened again."""

import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile
from django.db import connection
from playwright.sync_api import expect

from jobs.models import Job, PlayerSettings
from jobs.realtime.events import publish_job_state
from tests.test_browser import log_in
from tests.test_mixer import (
    RATE,
    browser,  # noqa: F401 (a fixture)
    state,
    wait_for,
)
from tests.test_mixer import open_mixer as open_player

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.database_agnostic]

SECONDS = 8.0
IMPULSES = (1.0, 3.0, 5.0, 7.0)
STEM_TONES = {"drums": 110, "bass": 220, "other": 440, "vocals": 880}
BEATS = [round(0.5 * n, 3) for n in range(16)]  # 120 BPM


def practice_stem(frequency: float) -> np.ndarray:
    """A quiet tone with the same sharp impulse in every stem at IMPULSES: where each stem's
    impulse comes out shows whether the stems are still aligned."""
    t = np.arange(int(SECONDS * RATE)) / RATE
    mono = 0.08 * np.sin(2 * np.pi * frequency * t)
    for at in IMPULSES:
        start = int(at * RATE)
        mono[start : start + 8] = 0.95
    return np.stack([mono, mono], axis=1).astype(np.float32)


@pytest.fixture(scope="session")
def practice_files(tmp_path_factory):
    """FLAC stems (lossless: the impulses stay where they are), written once for every test here."""
    folder = tmp_path_factory.mktemp("practice")
    for name, frequency in STEM_TONES.items():
        soundfile.write(folder / f"{name}.flac", practice_stem(frequency), RATE)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(folder / "bass.flac"), str(folder / "source.mp3")],
        check=True,
    )
    return folder


@pytest.fixture
def practice_job(owner, practice_files):
    """A succeeded 8 s job whose stems are the impulse stems, measured at 120 BPM in A minor."""
    from django.core.files import File
    from django.utils import timezone

    from jobs.models import Job, Stem

    job = Job(owner=owner, original_name="Practice.mp3", model_name="htdemucs", status="succeeded")
    job.duration_seconds = SECONDS
    job.tempo_bpm, job.beats, job.key, job.analysed_at = 120.0, BEATS, "A minor", timezone.now()
    with (practice_files / "source.mp3").open("rb") as handle:
        job.input_file.save("Practice.mp3", File(handle), save=False)
    job.save()
    for position, name in enumerate(STEM_TONES):
        path = practice_files / f"{name}.flac"
        stem = Stem(job=job, name=name, position=position, size=path.stat().st_size, peaks=[0.5] * 400)
        with path.open("rb") as handle:
            stem.file.save(f"{name}.flac", File(handle), save=True)
    return job


@pytest.fixture
def page(browser):  # noqa: F811
    return browser.new_context(viewport={"width": 1100, "height": 900}).new_page()


@pytest.fixture
def tapping_page(browser):  # noqa: F811
    """A page that may load the test's own tap worklet from a blob: URL, which the site's
    Content-Security-Policy rightly refuses (tests/test_csp.py holds the site to that policy)."""
    return browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=True).new_page()


def set_range(page, selector: str, value) -> None:
    page.eval_on_selector(
        selector,
        "(input, value) => { input.value = value; input.dispatchEvent(new Event('input')); }",
        str(value),
    )


def test_at_80_percent_tempo_the_clock_runs_at_0_8_of_real_time(live_web, owner, practice_job, page):
    open_player(page, live_web, practice_job)
    set_range(page, "[data-tempo]", 80)
    expect(page.locator("[data-practice-summary]")).to_have_text("80% · original pitch")
    page.click("[data-play]")
    first = wait_for(page, lambda s: s["playing"] and s["time"] > 0.3, "playing")
    last = wait_for(page, lambda s: s["contextTime"] > first["contextTime"] + 3, "3 s of audio clock", 10)
    rate = (last["time"] - first["time"]) / (last["contextTime"] - first["contextTime"])
    assert rate == pytest.approx(0.8, abs=0.01)
    # The stretch node reports the input position it is playing: the clock is that position.
    heard = wait_for(page, lambda s: s["stretch"]["inputTime"] > 1.5, "the node's own position")
    assert heard["stretch"]["inputTime"] == pytest.approx(heard["time"], abs=0.15)

    set_range(page, "[data-tempo]", 125)
    before = wait_for(page, lambda s: s["tempo"] == 125, "the tempo change")
    after = wait_for(page, lambda s: s["contextTime"] > before["contextTime"] + 1.5, "1.5 s more", 10)
    rate = (after["time"] - before["time"]) / (after["contextTime"] - before["contextTime"])
    assert 1.1 < rate < 1.3, "a change while playing takes effect (after the stretch's short latency)"
    assert after["playing"]


@pytest.mark.slow
def test_a_loop_from_2_to_4_s_keeps_the_playhead_inside_for_10_s(live_web, owner, practice_job, page):
    """A and B are set from the playhead with the keys, as a person would, after seeking to 2 s and 4 s."""
    open_player(page, live_web, practice_job)
    page.click("[data-play]")
    wait_for(page, lambda s: s["playing"], "playing")
    page.eval_on_selector("[data-seek]", "b => { b.value = '2'; b.dispatchEvent(new Event('change')); }")
    wait_for(page, lambda s: s["starts"]["drums"]["offset"] == 2, "seek to 2 s")
    page.keyboard.press("[")
    page.eval_on_selector("[data-seek]", "b => { b.value = '4'; b.dispatchEvent(new Event('change')); }")
    wait_for(page, lambda s: s["starts"]["drums"]["offset"] == 4, "seek to 4 s")
    page.keyboard.press("]")
    loop = wait_for(page, lambda s: s["loop"] is not None, "the 2-4 s loop")["loop"]
    assert loop["start"] == pytest.approx(2.0, abs=0.02)
    assert loop["end"] == pytest.approx(4.0, abs=0.02)
    expect(page.locator(".stem[data-stem=bass] .loop-region")).to_be_visible()

    start = state(page)["contextTime"]
    seen = []
    while True:
        now = state(page)
        if now["contextTime"] > start + 0.3:
            seen.append(now["time"])
        if now["contextTime"] > start + 10:
            break
        page.wait_for_timeout(40)
    assert now["playing"]
    assert min(seen) >= loop["start"] - 0.01, min(seen)
    assert max(seen) <= loop["end"] + 0.01, max(seen)
    assert max(seen) > 3.8, "it went round the whole loop"
    assert min(seen) < 2.2, "and started it again"

    page.keyboard.press("Space")
    paused = wait_for(page, lambda s: not s["playing"], "space pauses inside the loop")
    assert loop["start"] <= paused["time"] <= loop["end"]
    page.click(".stem[data-stem=bass] [data-mute]")
    assert state(page)["gains"]["bass"] == 0
    page.keyboard.press("Backslash")
    wait_for(page, lambda s: s["loop"] is None, "backslash clears the loop")


def test_stems_stay_aligned_after_tempo_and_seek_changes(live_web, owner, practice_job, tapping_page):
    """Each stem's own output (after its gain) is recorded; the impulse every stem has at 5.0 s must
    come out of all of them within 1 ms."""
    page = tapping_page
    open_player(page, live_web, practice_job)
    page.click("[data-play]")
    wait_for(page, lambda s: s["time"] > 0.5, "playing")
    set_range(page, "[data-tempo]", 73)
    set_range(page, "[data-semitones]", 3)
    page.eval_on_selector("[data-seek]", "b => { b.value = '4.2'; b.dispatchEvent(new Event('change')); }")
    wait_for(page, lambda s: s["starts"]["drums"]["offset"] == 4.2, "the seek")
    arrivals = page.evaluate(
        """async () => {
          const context = window.stemsiteMixer.context();
          const code = `registerProcessor('tap', class extends AudioWorkletProcessor {
            constructor() { super(); this.done = false; }
            process(inputs) {
              const channel = inputs[0][0];
              if (!this.done && channel) for (let i = 0; i < channel.length; i++) {
                if (Math.abs(channel[i]) > 0.35) {
                  this.port.postMessage(currentFrame + i); this.done = true; break;
                }
              }
              return true;
            }
          });`;
          const module = new Blob([code], {type: 'text/javascript'});
          await context.audioWorklet.addModule(URL.createObjectURL(module));
          const outputs = window.stemsiteMixer.stemOutputs();
          const found = Object.fromEntries(await Promise.all(Object.entries(outputs).map(([name, gain]) =>
            new Promise((resolve) => {
              const tap = new AudioWorkletNode(context, 'tap');
              tap.port.onmessage = (event) => resolve([name, event.data]);
              gain.connect(tap);
            }))));
          return {frames: found, rate: context.sampleRate, time: window.stemsiteMixer.state().time};
        }"""
    )
    frames = list(arrivals["frames"].values())
    spread_ms = (max(frames) - min(frames)) / arrivals["rate"] * 1000
    assert spread_ms <= 1.0, f"stems apart by {spread_ms:.2f} ms: {arrivals}"
    assert arrivals["time"] == pytest.approx(5.0, abs=0.4), "the impulse heard is the one at 5 s"


def test_click_follows_the_beats_at_the_tempo_and_counts_in_one_bar(live_web, owner, practice_job, page):
    open_player(page, live_web, practice_job)
    set_range(page, "[data-tempo]", 50)
    page.check("[data-click]")
    page.check("[data-count-in]")
    page.click("[data-play]")
    playing = wait_for(page, lambda s: s["countIn"] and len(s["clicks"]) >= 7, "count-in and clicks")
    count_in = playing["countIn"]["clicks"]
    assert np.diff(count_in) == pytest.approx([1.0, 1.0, 1.0], abs=1e-3), "120 BPM at 50%: a beat a second"
    start = playing["countIn"]["start"]
    assert start == pytest.approx(count_in[-1] + 1.0, abs=1e-3), "the track starts on the bar's next beat"
    beats = [t for t in playing["clicks"] if t >= start - 1e-3]
    assert beats[0] == pytest.approx(start, abs=1e-3), "the track's first beat (0 s) is clicked as it starts"
    assert np.diff(beats) == pytest.approx([1.0] * (len(beats) - 1), abs=2e-3)
    assert playing["time"] == 0 or playing["contextTime"] >= start, "the clock waits out the count-in"


def in_a_thread(function):
    """Database calls from a thread: Playwright runs an event loop in this one, where Django refuses them."""

    def call():
        try:
            return function()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def test_a_player_that_arrives_over_the_socket_saves_its_settings(live_web, owner, practice_job, page):
    """The job finishes while its page is open: the player comes in a pushed block, rendered without
    a request (no CSRF token in its forms), and its settings must still reach the server."""

    def set_status(status):
        Job.objects.filter(pk=practice_job.pk).update(status=status)
        if status == Job.Status.SUCCEEDED:
            practice_job.refresh_from_db()
            publish_job_state(practice_job)

    in_a_thread(lambda: set_status(Job.Status.RUNNING))
    log_in(page, live_web)
    page.goto(f"{live_web}{practice_job.get_absolute_url()}")
    expect(page.locator(".job-status")).to_have_attribute("data-status", "running")
    expect(page.locator("[data-mixer]")).to_have_count(0)
    in_a_thread(lambda: set_status(Job.Status.SUCCEEDED))
    wait_for(page, lambda s: all(s["loaded"].values()), "the pushed player")

    set_range(page, "[data-tempo]", 90)
    wait_for(page, lambda s: s["saved"] == s["settings"], "the settings saved")
    saved = in_a_thread(lambda: PlayerSettings.objects.get(user=owner, job=practice_job).values)
    assert saved["tempo"] == 90


def test_settings_come_back_when_the_page_is_opened_again(live_web, owner, practice_job, page):
    open_player(page, live_web, practice_job)
    set_range(page, "[data-tempo]", 85)
    set_range(page, "[data-semitones]", -2)
    page.click(".stem[data-stem=vocals] [data-mute]")
    page.click(".stem[data-stem=drums] [data-solo]")
    page.locator(".stem[data-stem=bass] [data-volume]").fill("0.5")
    page.eval_on_selector("[data-seek]", "b => { b.value = '1.5'; b.dispatchEvent(new Event('change')); }")
    page.keyboard.press("[")
    page.eval_on_selector("[data-seek]", "b => { b.value = '3.25'; b.dispatchEvent(new Event('change')); }")
    page.keyboard.press("]")
    page.check("[data-click]")
    expect(page.locator("[data-practice-summary]")).to_have_text("85% · -2 semitones")
    wait_for(page, lambda s: s["saved"] == s["settings"], "the settings saved")

    page.reload()
    restored = wait_for(page, lambda s: all(s["loaded"].values()), "the page again")
    assert (restored["tempo"], restored["semitones"]) == (85, -2)
    assert restored["loop"] == {"start": 1.5, "end": 3.25}
    assert restored["time"] == 1.5, "the playhead waits at the loop's start"
    assert restored["gains"] == {"drums": 1, "bass": 0, "other": 0, "vocals": 0}
    assert restored["settings"]["levels"]["bass"] == 0.5
    expect(page.locator("[data-practice-summary]")).to_have_text("85% · -2 semitones")
    expect(page.locator(".stem[data-stem=vocals] [data-mute]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-click]")).to_be_checked()
    fields = page.eval_on_selector("form.export", "f => Object.fromEntries(new FormData(f).entries())")
    assert (fields["tempo"], fields["semitones"]) == ("85", "-2")

    page.click("[data-tempo-reset]")
    page.click("[data-semitones-reset]")
    expect(page.locator("[data-practice-summary]")).to_have_text("100% · original pitch")
