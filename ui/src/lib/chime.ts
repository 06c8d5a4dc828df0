/**
 * The sound of a new approval: a short two-note tone made with WebAudio oscillators (no audio
 * file: the page's CSP allows nothing from elsewhere, and none is needed). Muting is remembered
 * in localStorage. Browsers start audio only after the user has interacted with the page, so the
 * audio context is created (or resumed) on the first click or key press, and a tone before that is
 * silently dropped by the browser; the badge, the title and the screen-reader announcement remain.
 */
const MUTE_KEY = 'tyrum.sound';

let ctx: AudioContext | null = null;

function context(): AudioContext | null {
  if (ctx) return ctx;
  try {
    ctx = new AudioContext();
  } catch {
    return null;
  }
  return ctx;
}

/** Creates or resumes the audio context on the first user gesture, as browsers require. */
export function unlockAudioOnGesture(): void {
  const unlock = () => {
    const c = context();
    if (c && c.state === 'suspended') void c.resume().catch(() => undefined);
    removeEventListener('pointerdown', unlock, true);
    removeEventListener('keydown', unlock, true);
  };
  addEventListener('pointerdown', unlock, true);
  addEventListener('keydown', unlock, true);
}

export function soundMuted(): boolean {
  try {
    return localStorage.getItem(MUTE_KEY) === 'off';
  } catch {
    return false;
  }
}

export function setSoundMuted(muted: boolean): void {
  try {
    if (muted) localStorage.setItem(MUTE_KEY, 'off');
    else localStorage.removeItem(MUTE_KEY);
  } catch {
    // Storage refused (private mode): the choice lasts for this page only.
  }
}

/** Plays the tone unless muted: 880 Hz then 660 Hz, 0.3 s, quiet. */
export function chime(): void {
  if (soundMuted()) return;
  const c = context();
  if (!c) return;
  if (c.state === 'suspended') void c.resume().catch(() => undefined);
  const t = c.currentTime;
  const osc = c.createOscillator();
  const gain = c.createGain();
  osc.type = 'sine';
  osc.frequency.setValueAtTime(880, t);
  osc.frequency.setValueAtTime(660, t + 0.12);
  gain.gain.setValueAtTime(0.0001, t);
  gain.gain.exponentialRampToValueAtTime(0.15, t + 0.01);
  gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
  osc.connect(gain).connect(c.destination);
  osc.start(t);
  osc.stop(t + 0.32);
}
