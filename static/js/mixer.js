// The stem player on a finished job's page: one transport for every stem, a volume, mute and solo
// per stem, waveforms drawn from the peaks the worker stored. Every stem is decoded once into an
// AudioBuffer and started at the same AudioContext time with the same offset, so the stems stay
// sample-aligned through play, pause and seek. The export form's hidden fields follow the controls.
// A share page's player carries data-read-only: it has no export form and saves no settings.

const START_DELAY = 0.05; // seconds between scheduling the sources and their common start time
const GAIN_SMOOTHING = 0.01; // time constant of a gain change while playing: no clicks

function formatTime(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function isTypingTarget(element) {
  if (!element || element === document.body) return false;
  if (element.isContentEditable) return true;
  const tag = element.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT" || tag === "BUTTON" || tag === "A") return true;
  if (tag === "INPUT") return !["range", "checkbox", "radio"].includes(element.type);
  return false;
}

class Mixer {
  constructor(root) {
    this.root = root;
    this.stems = JSON.parse(root.querySelector("#mixer-stems").textContent);
    this.readOnly = root.hasAttribute("data-read-only"); // a share page: no export form, no saved settings
    this.duration = Math.max(0, ...this.stems.map((stem) => stem.duration || 0));
    this.context = new AudioContext();
    this.master = this.context.createGain();
    this.master.connect(this.context.destination);
    this.playing = false;
    this.position = 0; // seconds into the track while paused; the offset of the last start while playing
    this.startedAt = 0; // context time at which the sources started playing from `position`
    this.sources = [];
    this.starts = {};
    this.frame = 0;
    this.tracks = this.stems.map((stem) => this.track(stem));
    this.transport();
    this.applyGains();
    this.tracks.forEach((track) => this.load(track));
    new ResizeObserver(() => this.tracks.forEach((track) => this.draw(track))).observe(root);
  }

  track(stem) {
    const row = this.root.querySelector(`[data-stem="${CSS.escape(stem.name)}"]`);
    const gain = this.context.createGain();
    gain.connect(this.master);
    const track = {
      stem, row, gain, buffer: null, volume: 1, muted: false, soloed: false, silent: false,
      canvas: row.querySelector("canvas"),
      playhead: row.querySelector(".playhead"),
      status: row.querySelector("[data-stem-loading]"),
      exportGain: this.root.querySelector(`[data-export-gain="${CSS.escape(stem.name)}"]`),
      exportMute: this.root.querySelector(`[data-export-mute="${CSS.escape(stem.name)}"]`),
      exportSolo: this.root.querySelector(`[data-export-solo="${CSS.escape(stem.name)}"]`),
    };
    row.querySelector("[data-wave]").hidden = false;
    row.querySelector("[data-controls]").hidden = false;
    const volume = row.querySelector("[data-volume]");
    const showVolume = () => volume.setAttribute("aria-valuetext", `${Math.round(track.volume * 100)}%`);
    volume.addEventListener("input", () => {
      track.volume = Number(volume.value);
      showVolume();
      this.applyGains();
    });
    showVolume();
    const mute = row.querySelector("[data-mute]");
    mute.addEventListener("click", () => {
      track.muted = !track.muted;
      mute.setAttribute("aria-pressed", String(track.muted));
      this.applyGains();
    });
    const solo = row.querySelector("[data-solo]");
    solo.addEventListener("click", () => {
      track.soloed = !track.soloed;
      solo.setAttribute("aria-pressed", String(track.soloed));
      this.applyGains();
    });
    track.canvas.parentElement.addEventListener("click", (event) => {
      const box = track.canvas.getBoundingClientRect();
      this.seek(((event.clientX - box.left) / box.width) * this.duration);
    });
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

  loaded() {
    const pending = this.tracks.filter((track) => track.row.dataset.loading === "true").length;
    const ready = this.tracks.filter((track) => track.buffer);
    const count = this.tracks.length;
    this.loadingText.textContent = pending ? `Loading audio: ${count - pending} of ${count} stems ready` : "";
    if (pending || !ready.length) return;
    this.setDuration(Math.max(...ready.map((track) => track.buffer.duration)));
    this.playButton.disabled = false;
    this.seekBar.disabled = false;
    this.root.dataset.ready = "true";
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
      if (this.playing) {
        track.gain.gain.cancelScheduledValues(now);
        track.gain.gain.setTargetAtTime(value, now, GAIN_SMOOTHING);
      } else {
        track.gain.gain.cancelScheduledValues(now);
        track.gain.gain.value = value;
      }
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

  currentTime() {
    if (!this.playing) return this.position;
    return Math.min(this.duration, this.position + Math.max(0, this.context.currentTime - this.startedAt));
  }

  async play() {
    if (this.playing || this.playButton.disabled) return;
    await this.context.resume();
    if (this.position >= this.duration) this.position = 0;
    this.playing = true;
    this.startSources(this.position);
    this.playButton.textContent = "Pause";
    this.playButton.setAttribute("aria-pressed", "true");
    this.tick();
  }

  pause() {
    if (!this.playing) return;
    this.position = this.currentTime();
    this.stopSources();
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
    if (this.playing) this.startSources(target);
    this.showPosition(target);
  }

  // Every source of one start shares one context time and one offset: that is the alignment.
  startSources(offset) {
    this.stopSources();
    const when = this.context.currentTime + START_DELAY;
    this.position = offset;
    this.startedAt = when;
    this.starts = {};
    for (const track of this.tracks) {
      if (!track.buffer) continue;
      const source = this.context.createBufferSource();
      source.buffer = track.buffer;
      source.connect(track.gain);
      source.start(when, Math.min(offset, track.buffer.duration));
      this.sources.push(source);
      this.starts[track.stem.name] = { when, offset };
    }
  }

  stopSources() {
    for (const source of this.sources) {
      source.stop();
      source.disconnect();
    }
    this.sources = [];
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
      loaded[track.stem.name] = Boolean(track.buffer);
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
      sources: this.sources.length,
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

// Read-only view of the player for tests and debugging.
window.stemsiteMixer = { state: () => (mixer ? mixer.state() : null) };

document.addEventListener("keydown", (event) => {
  if (!mixer || event.code !== "Space" || event.repeat || !document.contains(mixer.root)) return;
  if (event.ctrlKey || event.metaKey || event.altKey || isTypingTarget(event.target)) return;
  event.preventDefault();
  mixer.toggle();
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
