// The stem player on a finished job's page: one transport for every stem, a volume, mute and solo
// per stem, waveforms drawn from the peaks the worker stored, and the practice tools: tempo (pitch
// kept), pitch (tempo kept), an A-B loop, a click on the track's beats and a count-in.
//
// Every stem plays through ONE Signalsmith Stretch node whose channels are all the stems' channels
// (two per stem), split after it into a gain per stem: the stems share one time map, so they stay
// sample-aligned through tempo changes, seeks and loops. The player's clock follows the same map
// (input position, context time it is heard at, rate), so at 80% tempo it runs at 0.8 of real time.
// The export form's hidden fields follow the controls; the settings are saved per user and job.
// A share page's player carries data-read-only: it has no export form and saves no settings.

import SignalsmithStretch from "../vendor/signalsmith-stretch/SignalsmithStretch.mjs";
import { Metronome } from "./metronome.js";

// The worklet loads the same file from the site (no blob: URL, so a CSP needs no blob: source).
SignalsmithStretch.moduleUrl = new URL(
  "../vendor/signalsmith-stretch/SignalsmithStretch.mjs",
  import.meta.url,
).href;

const START_DELAY = 0.05; // seconds past the stretch's own latency before a change is heard
const GAIN_SMOOTHING = 0.01; // time constant of a gain change while playing: no clicks
const FADE = 0.012; // seconds of fade where playback starts, stops or jumps
const SAVE_DELAY_MS = 800; // settings are saved this long after the last change
const MIN_LOOP = 0.1; // seconds; the server's limit too (jobs/practice.py)
const COUNT_IN_BEATS = 4; // one bar of 4/4
const TEMPO_RANGE = [50, 150];
const SEMITONE_RANGE = [-12, 12];

// The page's CSRF token, as htmx sends it (templates/base.html): a player that arrived over the socket
// was rendered without a request, so the forms inside it carry none.
function pageCsrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return "";
  }
}

function formatTime(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function formatPrecise(seconds) {
  const tenths = Math.max(0, Math.round(seconds * 10));
  return `${Math.floor(tenths / 600)}:${String(Math.floor(tenths / 10) % 60).padStart(2, "0")}.${tenths % 10}`;
}

export function describePractice(tempo, semitones) {
  const pitch =
    semitones === 0
      ? "original pitch"
      : `${semitones > 0 ? "+" : "-"}${Math.abs(semitones)} semitone${Math.abs(semitones) === 1 ? "" : "s"}`;
  return `${tempo}% · ${pitch}`;
}

// Whether a key typed here belongs to the element: text fields always; a focused button or link
// takes Space itself (it presses it), but not the loop keys.
function isTypingTarget(element, space) {
  if (!element || element === document.body) return false;
  if (element.isContentEditable) return true;
  const tag = element.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag === "BUTTON" || tag === "A") return space;
  if (tag === "INPUT") return !["range", "checkbox", "radio"].includes(element.type);
  return false;
}

function clamp(value, [low, high]) {
  return Math.max(low, Math.min(high, value));
}

function readJson(root, selector, fallback) {
  const element = root.querySelector(selector);
  return element ? JSON.parse(element.textContent) || fallback : fallback;
}

class Mixer {
  constructor(root) {
    this.root = root;
    this.stems = readJson(root, "#mixer-stems", []);
    this.analysis = readJson(root, "#mixer-track", {}); // tempo_bpm and beats the worker measured
    this.beats = this.analysis.beats || [];
    this.readOnly = root.hasAttribute("data-read-only"); // a share page: no export form, no saved settings
    this.duration = Math.max(0, ...this.stems.map((stem) => stem.duration || 0));
    this.context = new AudioContext();
    this.fader = this.context.createGain(); // fades where playback starts, stops or jumps
    this.fader.connect(this.context.destination);
    this.master = this.context.createGain();
    this.master.connect(this.fader);
    this.metronome = new Metronome(this.context, this.context.destination, (from, to) =>
      this.beatTimes(from, to),
    );
    this.stretch = null;
    this.latency = 0;
    this.playing = false;
    this.position = 0; // seconds into the track while paused
    this.segments = []; // while playing: {startedAt, position, rate, loop}, as scheduled on the stretch
    this.countIn = null; // {clicks, start} of the last count-in
    this.starts = {};
    this.frame = 0;
    this.tempo = 100;
    this.semitones = 0;
    this.loopA = null;
    this.loopB = null;
    this.clickOn = false;
    this.countInOn = false;
    this.saveTimer = 0;
    this.saved = null;
    this.tracks = this.stems.map((stem) => this.track(stem));
    this.transport();
    this.practice();
    this.restore(readJson(root, "#player-settings", {}));
    this.applyGains();
    this.showPractice();
    this.tracks.forEach((track) => this.load(track));
    new ResizeObserver(() => this.tracks.forEach((track) => this.draw(track))).observe(root);
    addEventListener("pagehide", () => this.saveNow(true));
  }

  track(stem) {
    const row = this.root.querySelector(`[data-stem="${CSS.escape(stem.name)}"]`);
    const gain = this.context.createGain();
    gain.connect(this.master);
    const track = {
      stem, row, gain, buffer: null, decoded: false, volume: 1, muted: false, soloed: false, silent: false,
      canvas: row.querySelector("canvas"),
      playhead: row.querySelector(".playhead"),
      status: row.querySelector("[data-stem-loading]"),
      volumeInput: row.querySelector("[data-volume]"),
      muteButton: row.querySelector("[data-mute]"),
      soloButton: row.querySelector("[data-solo]"),
      exportGain: this.root.querySelector(`[data-export-gain="${CSS.escape(stem.name)}"]`),
      exportMute: this.root.querySelector(`[data-export-mute="${CSS.escape(stem.name)}"]`),
      exportSolo: this.root.querySelector(`[data-export-solo="${CSS.escape(stem.name)}"]`),
    };
    row.querySelector("[data-wave]").hidden = false;
    row.querySelector("[data-controls]").hidden = false;
    track.volumeInput.addEventListener("input", () => {
      track.volume = Number(track.volumeInput.value);
      this.applyGains();
      this.changed();
    });
    track.muteButton.addEventListener("click", () => {
      track.muted = !track.muted;
      this.applyGains();
      this.changed();
    });
    track.soloButton.addEventListener("click", () => {
      track.soloed = !track.soloed;
      this.applyGains();
      this.changed();
    });
    const wave = track.canvas.parentElement;
    wave.addEventListener("click", (event) => {
      const box = track.canvas.getBoundingClientRect();
      this.seek(((event.clientX - box.left) / box.width) * this.duration);
    });
    track.loopRegion = Object.assign(document.createElement("span"), { className: "loop-region", hidden: true });
    track.markers = ["a", "b"].map((which) => {
      const marker = Object.assign(document.createElement("span"), {
        className: `loop-marker loop-marker-${which}`, hidden: true,
        title: which === "a" ? "Loop start (A): drag to move" : "Loop end (B): drag to move",
      });
      marker.dataset.marker = which;
      marker.addEventListener("pointerdown", (event) => this.dragMarker(event, which, wave));
      marker.addEventListener("click", (event) => event.stopPropagation());
      return marker;
    });
    wave.append(track.loopRegion, ...track.markers);
    this.draw(track);
    return track;
  }

  transport() {
    const bar = this.root.querySelector("[data-transport]");
    bar.hidden = false;
    this.playButton = bar.querySelector("[data-play]");
    this.seekBar = bar.querySelector("[data-seek]");
    this.timeText = bar.querySelector("[data-time]");
    this.durationText = bar.querySelector("[data-duration]");
    this.loadingText = bar.querySelector("[data-loading]");
    this.playButton.addEventListener("click", () => this.toggle());
    this.seekBar.addEventListener("input", () => this.showPosition(Number(this.seekBar.value)));
    this.seekBar.addEventListener("change", () => this.seek(Number(this.seekBar.value)));
    this.setDuration(this.duration);
  }

  practice() {
    const panel = this.root.querySelector("[data-practice]");
    panel.hidden = false;
    const find = (name) => panel.querySelector(`[data-${name}]`);
    this.controls = {
      tempo: find("tempo"), tempoValue: find("tempo-value"), tempoReset: find("tempo-reset"),
      semitones: find("semitones"), semitonesValue: find("semitones-value"), semitonesReset: find("semitones-reset"),
      summary: find("practice-summary"), bpm: find("practice-bpm"),
      loopA: find("loop-a"), loopB: find("loop-b"), loopClear: find("loop-clear"), loopText: find("loop-text"),
      click: find("click"), clickVolume: find("click-volume"), countIn: find("count-in"),
      exportTempo: this.root.querySelector("[data-export-tempo]"),
      exportSemitones: this.root.querySelector("[data-export-semitones]"),
      exportLoop: this.root.querySelector("[data-export-loop]"),
      exportLoopStart: this.root.querySelector("[data-export-loop-start]"),
      exportLoopEnd: this.root.querySelector("[data-export-loop-end]"),
    };
    const c = this.controls;
    c.tempo.addEventListener("input", () => this.setTempo(Number(c.tempo.value)));
    c.tempoReset.addEventListener("click", () => this.setTempo(100));
    c.semitones.addEventListener("input", () => this.setSemitones(Number(c.semitones.value)));
    c.semitonesReset.addEventListener("click", () => this.setSemitones(0));
    c.loopA.addEventListener("click", () => this.setLoopA());
    c.loopB.addEventListener("click", () => this.setLoopB());
    c.loopClear.addEventListener("click", () => this.clearLoop());
    if (!this.readOnly) c.exportLoop.addEventListener("change", () => this.showPractice());
    const steady = this.beats.length > 0;
    for (const input of [c.click, c.countIn]) input.disabled = !steady;
    c.click.addEventListener("change", () => {
      this.clickOn = c.click.checked;
      this.metronome.enabled = this.clickOn;
      this.changed();
    });
    c.clickVolume.addEventListener("input", () => {
      this.metronome.setVolume(Number(c.clickVolume.value));
      this.changed();
    });
    c.countIn.addEventListener("change", () => {
      this.countInOn = c.countIn.checked;
      this.changed();
    });
  }

  // Saved settings (jobs/player_settings.py's shape) back into the controls, before any audio.
  restore(saved) {
    const levels = saved.levels || {};
    for (const track of this.tracks) {
      const name = track.stem.name;
      if (name in levels) track.volume = Number(levels[name]);
      track.muted = (saved.muted || []).includes(name);
      track.soloed = (saved.soloed || []).includes(name);
      track.volumeInput.value = String(track.volume);
    }
    this.tempo = clamp(Number(saved.tempo) || 100, TEMPO_RANGE);
    this.semitones = clamp(Number(saved.semitones) || 0, SEMITONE_RANGE);
    if (saved.loop) [this.loopA, this.loopB] = [saved.loop.start, saved.loop.end];
    if (saved.loop && this.loopA < this.loopB) this.position = this.loopA;
    const c = this.controls;
    this.clickOn = Boolean(saved.click) && !c.click.disabled;
    this.countInOn = Boolean(saved.count_in) && !c.countIn.disabled;
    c.click.checked = this.clickOn;
    c.countIn.checked = this.countInOn;
    this.metronome.enabled = this.clickOn;
    if (typeof saved.click_volume === "number") c.clickVolume.value = String(saved.click_volume);
    this.metronome.setVolume(Number(c.clickVolume.value));
    this.saved = this.settings();
  }

  settings() {
    const loop = this.loop();
    return {
      levels: Object.fromEntries(this.tracks.map((track) => [track.stem.name, track.volume])),
      muted: this.tracks.filter((track) => track.muted).map((track) => track.stem.name),
      soloed: this.tracks.filter((track) => track.soloed).map((track) => track.stem.name),
      tempo: this.tempo,
      semitones: this.semitones,
      loop: loop ? { start: Math.round(loop.start * 100) / 100, end: Math.round(loop.end * 100) / 100 } : null,
      click: this.clickOn,
      click_volume: Number(this.controls.clickVolume.value),
      count_in: this.countInOn,
    };
  }

  changed() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.saveNow(false), SAVE_DELAY_MS);
  }

  async saveNow(leaving) {
    clearTimeout(this.saveTimer);
    const settings = this.settings();
    if (JSON.stringify(settings) === JSON.stringify(this.saved) || !this.root.dataset.settingsUrl) return;
    const token = pageCsrfToken();
    try {
      const response = await fetch(this.root.dataset.settingsUrl, {
        method: "POST",
        credentials: "same-origin",
        keepalive: leaving,
        headers: { "Content-Type": "application/json", "X-CSRFToken": token },
        body: JSON.stringify(settings),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      this.saved = settings;
    } catch (error) {
      console.error("player settings not saved:", error);
    }
  }

  setDuration(seconds) {
    this.duration = seconds;
    this.seekBar.max = String(seconds);
    this.durationText.textContent = formatTime(seconds);
    this.showPosition(this.currentTime());
  }

  async load(track) {
    track.status.textContent = "Loading…";
    track.row.dataset.loading = "true";
    try {
      const response = await fetch(track.stem.url, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await this.read(response, track);
      track.status.textContent = "Decoding…";
      track.buffer = await this.context.decodeAudioData(data);
      track.decoded = true;
      track.status.textContent = "";
      track.row.dataset.loading = "false";
    } catch (error) {
      track.status.textContent = "Could not load this stem.";
      track.row.dataset.loading = "failed";
      console.error(`stem ${track.stem.name}:`, error);
    }
    this.loaded();
  }

  async read(response, track) {
    const total = Number(response.headers.get("Content-Length")) || 0;
    if (!response.body || !total) return response.arrayBuffer();
    const chunks = [];
    const reader = response.body.getReader();
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      track.status.textContent = `Loading… ${Math.min(100, Math.round((received / total) * 100))}%`;
    }
    const data = new Uint8Array(received);
    let at = 0;
    for (const chunk of chunks) {
      data.set(chunk, at);
      at += chunk.length;
    }
    return data.buffer;
  }

  async loaded() {
    const pending = this.tracks.filter((track) => track.row.dataset.loading === "true").length;
    const ready = this.tracks.filter((track) => track.decoded);
    const count = this.tracks.length;
    this.loadingText.textContent = pending ? `Loading audio: ${count - pending} of ${count} stems ready` : "";
    if (pending || !ready.length || this.stretch) return;
    this.loadingText.textContent = "Preparing the player…";
    try {
      await this.connectStretch();
    } catch (error) {
      this.loadingText.textContent = "This browser could not start the player.";
      console.error("stretch:", error);
      return;
    }
    this.loadingText.textContent = "";
    this.playButton.disabled = false;
    this.seekBar.disabled = false;
    this.root.dataset.ready = "true";
  }

  // All stems into one stretch node, 2 channels each (a stem that failed to load is silence).
  async connectStretch() {
    const length = Math.max(...this.tracks.map((track) => (track.buffer ? track.buffer.length : 0)));
    const channels = this.tracks.length * 2;
    const stretch = await SignalsmithStretch(this.context, {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [channels],
    });
    // Signalsmith's "cheaper" preset: a 12-channel node keeps up on two cores with room to spare, and
    // exports stretch with the same preset (jobs/engine/stretch.py), so they sound as the player did.
    await stretch.configure({ preset: "cheaper" });
    const splitter = this.context.createChannelSplitter(channels);
    stretch.connect(splitter);
    const data = [];
    this.tracks.forEach((track, index) => {
      const merger = this.context.createChannelMerger(2);
      splitter.connect(merger, index * 2, 0);
      splitter.connect(merger, index * 2 + 1, 1);
      merger.connect(track.gain);
      for (const channel of [0, 1]) {
        const samples = new Float32Array(length);
        if (track.buffer) track.buffer.copyFromChannel(samples, Math.min(channel, track.buffer.numberOfChannels - 1));
        data.push(samples);
      }
      track.buffer = null; // the node holds the samples now
    });
    await stretch.addBuffers(data, data.map((samples) => samples.buffer));
    await stretch.setUpdateInterval(0.05);
    this.latency = await stretch.latency();
    this.stretch = stretch;
    this.setDuration(length / this.context.sampleRate);
  }

  effectiveGain(track) {
    const anySolo = this.tracks.some((other) => other.soloed);
    if (track.muted || (anySolo && !track.soloed)) return 0;
    return track.volume;
  }

  applyGains() {
    const now = this.context.currentTime;
    for (const track of this.tracks) {
      const value = this.effectiveGain(track);
      track.target = value;
      track.gain.gain.cancelScheduledValues(now);
      if (this.playing) track.gain.gain.setTargetAtTime(value, now, GAIN_SMOOTHING);
      else track.gain.gain.value = value;
      track.muteButton.setAttribute("aria-pressed", String(track.muted));
      track.soloButton.setAttribute("aria-pressed", String(track.soloed));
      track.volumeInput.setAttribute("aria-valuetext", `${Math.round(track.volume * 100)}%`);
      if (track.row.classList.toggle("silent", value === 0) !== track.silent) {
        track.silent = value === 0;
        this.draw(track);
      }
      if (!this.readOnly) {
        track.exportGain.value = String(track.volume);
        track.exportMute.disabled = !track.muted;
        track.exportSolo.disabled = !track.soloed;
      }
    }
  }

  // --- The clock: where in the track the audio heard at context time `time` comes from.

  loop() {
    if (this.loopA === null || this.loopB === null || this.loopB - this.loopA < MIN_LOOP) return null;
    return { start: this.loopA, end: this.loopB };
  }

  segmentAt(time) {
    let found = this.segments[0];
    for (const segment of this.segments) if (segment.startedAt <= time) found = segment;
    return found;
  }

  clockAt(time) {
    const segment = this.segmentAt(time);
    if (!segment) return this.position;
    let at = segment.position + Math.max(0, time - segment.startedAt) * segment.rate;
    const loop = segment.loop;
    if (loop && at >= loop.end) at = loop.start + ((at - loop.start) % (loop.end - loop.start));
    return Math.min(this.duration, at);
  }

  currentTime() {
    return this.playing ? this.clockAt(this.context.currentTime) : this.position;
  }

  // From context time `when` on, play the track from `offset` at the current tempo, pitch and loop
  // (the loop only while the playhead is before its end). Earlier segments keep playing until then.
  schedule(offset, when) {
    const loop = this.loop();
    const live = loop && offset < loop.end ? loop : null;
    const rate = this.tempo / 100;
    this.segments = this.segments.filter((segment) => segment.startedAt < when);
    const now = this.context.currentTime;
    while (this.segments.length > 1 && this.segments[1].startedAt <= now) this.segments.shift();
    this.segments.push({ startedAt: when, position: offset, rate, loop: live });
    this.stretch.schedule({
      active: true, output: when, input: offset, rate, semitones: this.semitones,
      loopStart: live ? live.start : 0, loopEnd: live ? live.end : 0,
    });
    for (const track of this.tracks) if (track.decoded) this.starts[track.stem.name] = { when, offset };
    this.metronome.restart(when);
  }

  nextChange() {
    return this.context.currentTime + this.latency + START_DELAY;
  }

  // A dip in the output around `when`, where the audio jumps (a seek, a loop moved under the playhead).
  dipAt(when) {
    const gain = this.fader.gain;
    gain.cancelScheduledValues(this.context.currentTime);
    gain.setValueAtTime(1, Math.max(this.context.currentTime, when - FADE));
    gain.linearRampToValueAtTime(0, when);
    gain.linearRampToValueAtTime(1, when + FADE);
  }

  async play() {
    if (this.playing || this.playButton.disabled) return;
    await this.context.resume();
    if (this.position >= this.duration) this.position = 0;
    let when = this.nextChange();
    this.countIn = null;
    const period = this.beatPeriod();
    if (this.countInOn && period) {
      const clicks = Array.from({ length: COUNT_IN_BEATS }, (_, beat) => when + beat * period);
      clicks.forEach((time, beat) => this.metronome.click(time, beat === 0));
      const next = this.beats.find((beat) => beat >= this.position);
      const lead = next === undefined ? 0 : (next - this.position) / (this.tempo / 100);
      when += COUNT_IN_BEATS * period - (lead < period * 0.99 ? lead : 0);
      this.countIn = { clicks, start: when };
    }
    this.playing = true;
    this.segments = [];
    const gain = this.fader.gain;
    gain.cancelScheduledValues(this.context.currentTime);
    gain.setValueAtTime(0, this.context.currentTime);
    gain.setValueAtTime(0, when);
    gain.linearRampToValueAtTime(1, when + FADE);
    this.schedule(this.position, when);
    this.applyGains();
    this.playButton.textContent = "Pause";
    this.playButton.setAttribute("aria-pressed", "true");
    this.tick();
  }

  pause() {
    if (!this.playing) return;
    this.position = this.currentTime();
    const now = this.context.currentTime;
    const gain = this.fader.gain;
    gain.cancelScheduledValues(now);
    gain.setValueAtTime(gain.value, now);
    gain.linearRampToValueAtTime(0, now + FADE);
    this.stretch.schedule({ active: false, output: now + FADE });
    this.metronome.stop();
    this.segments = [];
    this.playing = false;
    this.playButton.textContent = "Play";
    this.playButton.setAttribute("aria-pressed", "false");
    cancelAnimationFrame(this.frame);
    this.showPosition(this.position);
  }

  toggle() {
    if (this.playing) this.pause();
    else this.play();
  }

  seek(seconds) {
    const target = Math.max(0, Math.min(this.duration, seconds));
    this.position = target;
    if (this.playing) {
      const when = this.nextChange();
      this.segments = [];
      this.dipAt(when);
      this.schedule(target, when);
    }
    this.showPosition(target);
  }

  // --- Practice controls.

  setTempo(percent) {
    this.tempo = clamp(Math.round(percent), TEMPO_RANGE);
    this.restretch();
    this.showPractice();
    this.changed();
  }

  setSemitones(semitones) {
    this.semitones = clamp(Math.round(semitones), SEMITONE_RANGE);
    this.restretch();
    this.showPractice();
    this.changed();
  }

  // Tempo, pitch or loop changed while playing: carry on from where the audio will be, no jump.
  restretch() {
    if (!this.playing || !this.stretch) return;
    const when = this.nextChange();
    this.schedule(this.clockAt(when), when);
  }

  setLoopA() {
    this.loopA = this.currentTime();
    if (this.loopB !== null && this.loopB - this.loopA < MIN_LOOP) this.loopB = null;
    this.loopChanged();
  }

  setLoopB() {
    const time = this.currentTime();
    if (this.loopA === null) this.loopA = 0;
    if (time - this.loopA < MIN_LOOP) return;
    this.loopB = time;
    this.loopChanged();
  }

  clearLoop() {
    this.loopA = this.loopB = null;
    this.loopChanged();
  }

  // A loop that the playhead has passed starts over at A; otherwise playback carries on into it.
  loopChanged() {
    const loop = this.loop();
    if (loop && this.currentTime() >= loop.end) this.seek(loop.start);
    else this.restretch();
    this.showPractice();
    this.changed();
  }

  dragMarker(event, which, wave) {
    event.preventDefault();
    event.stopPropagation();
    const marker = event.currentTarget;
    marker.setPointerCapture(event.pointerId);
    const move = (moved) => {
      const box = wave.getBoundingClientRect();
      const time = clamp(((moved.clientX - box.left) / box.width) * this.duration, [0, this.duration]);
      if (which === "a") this.loopA = this.loopB === null ? time : Math.min(time, this.loopB - MIN_LOOP);
      else this.loopB = Math.max(time, (this.loopA ?? 0) + MIN_LOOP);
      this.showPractice();
    };
    const end = () => {
      marker.removeEventListener("pointermove", move);
      marker.removeEventListener("pointerup", end);
      marker.removeEventListener("pointercancel", end);
      this.loopChanged();
    };
    marker.addEventListener("pointermove", move);
    marker.addEventListener("pointerup", end);
    marker.addEventListener("pointercancel", end);
  }

  beatPeriod() {
    const bpm = this.analysis.tempo_bpm;
    return bpm ? 60 / (bpm * (this.tempo / 100)) : 0;
  }

  // [context time, accent] of every beat heard between context times `from` and `to`.
  beatTimes(from, to) {
    const found = [];
    this.segments.forEach((segment, index) => {
      const next = this.segments[index + 1];
      const start = Math.max(from, segment.startedAt);
      const end = Math.min(to, next ? next.startedAt : to);
      if (end <= start || !segment.rate) return;
      const first = this.clockAt(start);
      const last = first + (end - start) * segment.rate;
      const loop = segment.loop;
      const spans = [[first, Math.min(last, loop ? loop.end : last), start]];
      if (loop && last > loop.end) {
        spans.push([loop.start, loop.start + last - loop.end, start + (loop.end - first) / segment.rate]);
      }
      for (const [a, b, at] of spans) {
        for (const beat of this.beats) {
          if (beat >= a && beat < b) found.push([at + (beat - a) / segment.rate, false]);
        }
      }
    });
    return found;
  }

  // The export form's hidden fields follow the practice controls (share pages have no form).
  showExportPractice(loop) {
    const c = this.controls;
    c.exportTempo.value = String(this.tempo);
    c.exportSemitones.value = String(this.semitones);
    c.exportLoop.disabled = !loop;
    const exportLoop = Boolean(loop) && c.exportLoop.checked;
    c.exportLoopStart.disabled = c.exportLoopEnd.disabled = !exportLoop;
    if (loop) {
      c.exportLoopStart.value = loop.start.toFixed(2);
      c.exportLoopEnd.value = loop.end.toFixed(2);
    }
  }

  showPractice() {
    const c = this.controls;
    c.tempo.value = String(this.tempo);
    c.tempo.setAttribute("aria-valuetext", `${this.tempo}%`);
    c.tempoValue.textContent = `${this.tempo}%`;
    c.tempoReset.disabled = this.tempo === 100;
    c.semitones.value = String(this.semitones);
    const pitch = `${this.semitones > 0 ? "+" : ""}${this.semitones}`;
    c.semitones.setAttribute("aria-valuetext", `${pitch} semitones`);
    c.semitonesValue.textContent = pitch;
    c.semitonesReset.disabled = this.semitones === 0;
    c.summary.textContent = describePractice(this.tempo, this.semitones);
    if (c.bpm && this.analysis.tempo_bpm) {
      c.bpm.textContent = `${Math.round((this.analysis.tempo_bpm * this.tempo) / 100)} BPM`;
    }
    const loop = this.loop();
    c.loopText.textContent = loop
      ? `Loop ${formatPrecise(loop.start)} – ${formatPrecise(loop.end)}`
      : this.loopA !== null
        ? `A at ${formatPrecise(this.loopA)}: set B`
        : "No loop";
    c.loopClear.disabled = this.loopA === null;
    if (!this.readOnly) this.showExportPractice(loop);
    const percent = (time) => `${this.duration ? (Math.min(time, this.duration) / this.duration) * 100 : 0}%`;
    for (const track of this.tracks) {
      const [a, b] = track.markers;
      a.hidden = this.loopA === null;
      b.hidden = this.loopB === null;
      if (this.loopA !== null) a.style.left = percent(this.loopA);
      if (this.loopB !== null) b.style.left = percent(this.loopB);
      track.loopRegion.hidden = !loop;
      if (loop) {
        track.loopRegion.style.left = percent(loop.start);
        track.loopRegion.style.width = `calc(${percent(loop.end)} - ${percent(loop.start)})`;
      }
    }
  }

  tick() {
    const time = this.currentTime();
    this.showPosition(time);
    if (time >= this.duration) {
      this.pause();
      this.position = 0;
      this.showPosition(0);
      return;
    }
    this.frame = requestAnimationFrame(() => this.tick());
  }

  showPosition(seconds) {
    const fraction = this.duration ? Math.min(1, seconds / this.duration) : 0;
    if (document.activeElement !== this.seekBar || this.playing) this.seekBar.value = String(seconds);
    this.timeText.textContent = formatTime(seconds);
    for (const track of this.tracks || []) track.playhead.style.left = `${fraction * 100}%`;
  }

  draw(track) {
    const canvas = track.canvas;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const scale = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const context = canvas.getContext("2d");
    context.setTransform(scale, 0, 0, scale, 0, 0);
    context.clearRect(0, 0, width, height);
    context.fillStyle = getComputedStyle(canvas).color;
    const peaks = track.stem.peaks || [];
    if (!peaks.length) {
      context.fillRect(0, height / 2 - 0.5, width, 1);
      return;
    }
    const middle = height / 2;
    for (let x = 0; x < width; x++) {
      const from = Math.floor((x / width) * peaks.length);
      const to = Math.max(from + 1, Math.floor(((x + 1) / width) * peaks.length));
      let peak = 0;
      for (let i = from; i < to && i < peaks.length; i++) peak = Math.max(peak, peaks[i]);
      const half = Math.max(0.5, peak * (middle - 2));
      context.fillRect(x, middle - half, 1, half * 2);
    }
    track.canvas.dataset.drawn = String(peaks.length);
  }

  state() {
    const gains = {};
    const targets = {};
    const loaded = {};
    for (const track of this.tracks) {
      gains[track.stem.name] = track.gain.gain.value;
      targets[track.stem.name] = track.target;
      loaded[track.stem.name] = track.decoded && Boolean(this.stretch);
    }
    return {
      playing: this.playing,
      time: this.currentTime(),
      duration: this.duration,
      contextTime: this.context.currentTime,
      contextState: this.context.state,
      gains,
      targets,
      loaded,
      starts: structuredClone(this.starts),
      sources: this.playing ? this.tracks.filter((track) => track.decoded).length : 0,
      tempo: this.tempo,
      semitones: this.semitones,
      summary: this.controls.summary.textContent,
      loop: this.loop(),
      stretch: this.stretch ? { inputTime: this.stretch.inputTime, latency: this.latency } : null,
      clicks: [...this.metronome.recent],
      countIn: this.countIn && structuredClone(this.countIn),
      settings: this.settings(),
      saved: this.saved,
    };
  }
}

let mixer = null;

function start(root) {
  const element = root.matches?.("[data-mixer]") ? root : root.querySelector?.("[data-mixer]");
  if (!element || element.dataset.started) return;
  element.dataset.started = "true";
  mixer = new Mixer(element);
}

// Read-only view of the player for tests and debugging, and the context for measuring it.
window.stemsiteMixer = {
  state: () => (mixer ? mixer.state() : null),
  context: () => mixer?.context,
  stemOutputs: () => (mixer ? Object.fromEntries(mixer.tracks.map((t) => [t.stem.name, t.gain])) : {}),
};

// Space by its place on the keyboard; the loop keys by the character they type, on any layout.
const KEYS = {
  Space: (player) => player.toggle(),
  "[": (player) => player.setLoopA(),
  "]": (player) => player.setLoopB(),
  "\\": (player) => player.clearLoop(),
};

document.addEventListener("keydown", (event) => {
  const action = event.code === "Space" ? KEYS.Space : KEYS[event.key];
  if (!mixer || !action || event.repeat || !document.contains(mixer.root)) return;
  const space = event.code === "Space";
  if (event.ctrlKey || event.metaKey || event.altKey || isTypingTarget(event.target, space)) return;
  event.preventDefault();
  action(mixer);
});

// A finished job's mixer arrives either with the page or in a status block pushed when the job ends.
document.addEventListener("htmx:load", (event) => start(event.target));
start(document);

// A refused mix answers 400 with the same fragment, carrying the sentences: show it like any answer.
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.target && event.detail.target.id === "mix-exports" && event.detail.xhr.status === 400) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
