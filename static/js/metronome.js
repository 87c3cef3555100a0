// The click: a short blip on each detected beat of the track, at the player's tempo, through its own
// volume. Clicks are scheduled a little ahead on the audio clock (a look-ahead timer, as Web Audio
// metronomes do), so they land on the beat however busy the page is.

const LOOKAHEAD = 0.25; // seconds of clicks scheduled ahead of the audio clock
const TIMER_MS = 40;

function blip(context, frequency, seconds = 0.03) {
  const length = Math.round(seconds * context.sampleRate);
  const buffer = context.createBuffer(1, length, context.sampleRate);
  const data = buffer.getChannelData(0);
  for (let i = 0; i < length; i++) {
    const t = i / context.sampleRate;
    data[i] = Math.sin(2 * Math.PI * frequency * t) * Math.exp(-t / 0.006) * 0.9;
  }
  return buffer;
}

export class Metronome {
  // `timeline(from, to)` lists [contextTime, accent] for every beat heard between two context times.
  constructor(context, destination, timeline) {
    this.context = context;
    this.gain = context.createGain();
    this.gain.connect(destination);
    this.timeline = timeline;
    this.sounds = { beat: blip(context, 1500), accent: blip(context, 2400) };
    this.enabled = false;
    this.scheduledUntil = 0;
    this.pending = []; // sources not yet played, so a seek or a tempo change can take them back
    this.recent = []; // context times of the last clicks scheduled (the page's state shows them)
    this.timer = 0;
  }

  setVolume(value) {
    this.gain.gain.value = value;
  }

  // One click at `when` (context time), whatever the beat clock says: the count-in uses it.
  click(when, accent = false) {
    const source = this.context.createBufferSource();
    source.buffer = accent ? this.sounds.accent : this.sounds.beat;
    source.connect(this.gain);
    source.start(when);
    source.onended = () => source.disconnect();
    this.pending.push({ source, when });
    this.recent.push(Math.round(when * 1e4) / 1e4);
    if (this.recent.length > 32) this.recent.shift();
  }

  // Playback (re)started at `from` (context time): forget clicks planned for the old timeline.
  restart(from) {
    this.cancel(from);
    this.scheduledUntil = from;
    if (!this.timer) this.timer = setInterval(() => this.schedule(), TIMER_MS);
    this.schedule();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
    this.cancel(this.context.currentTime);
  }

  cancel(from) {
    this.pending = this.pending.filter(({ source, when }) => {
      if (when < from) return when > this.context.currentTime - 1;
      source.stop();
      source.disconnect();
      return false;
    });
  }

  schedule() {
    if (!this.enabled) return;
    const until = this.context.currentTime + LOOKAHEAD;
    if (until <= this.scheduledUntil) return;
    for (const [when, accent] of this.timeline(this.scheduledUntil, until)) {
      if (when >= this.context.currentTime) this.click(when, accent);
    }
    this.scheduledUntil = until;
  }
}
