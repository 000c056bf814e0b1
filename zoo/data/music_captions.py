"""``zoo data build music-captions DIR``: a generated music–caption set in the manifest format of
:mod:`zoo.data.audio_text` (no music-caption set ships offline; DATA.md).

Each clip is a short melody with six sampled attributes — instrument family, register, tempo, dynamics,
articulation, mode — rendered through fluidsynth with a General-MIDI soundfont when both are installed (Debian
``fluidsynth`` + ``fluid-soundfont-gm``), else by numpy synthesis (one additive / FM / plucked-string voice per
family). Every clip gets several captions written from its attributes with varied wording and word order, and the
attributes as label columns for zero-shot evaluation.

Determinism and resumption: clip ``i`` draws everything from ``numpy.random.default_rng([seed, i])``, so it does not
depend on other clips; existing readable clips are skipped, so an interrupted build resumes. Audio and manifests are
written to temporary names and renamed. ``meta.json`` records the settings; a rerun with other settings into the
same folder is refused.

Output: ``DIR/audio/{i:05d}.wav`` (16-bit PCM), ``DIR/train.csv`` and ``DIR/test.csv`` (rows ``audio_path, caption,
label, family, register, tempo, dynamics, articulation, mode``; ``label`` = instrument family), ``DIR/meta.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

#: family → General-MIDI program (0-based): acoustic grand, drawbar organ, string ensemble 1, flute, brass section,
#: acoustic nylon guitar, tubular bells
FAMILIES: dict[str, int] = {"piano": 0, "organ": 16, "strings": 48, "flute": 73, "brass": 61, "guitar": 24, "bells": 14}
REGISTERS: dict[str, tuple[int, int]] = {"low": (40, 52), "middle": (55, 67), "high": (72, 84)}  # tonic MIDI range
TEMPI: dict[str, tuple[float, float]] = {"slow": (60, 76), "moderate": (96, 112), "fast": (150, 172)}  # bpm
DYNAMICS: dict[str, tuple[int, int]] = {"soft": (35, 50), "loud": (105, 122)}  # MIDI velocity
ARTICULATIONS: dict[str, float] = {"staccato": 0.3, "legato": 1.0}  # sounding fraction of each note's slot
MODES: dict[str, list[int]] = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}
ATTRIBUTES = ("family", "register", "tempo", "dynamics", "articulation", "mode")

# caption wording: several phrasings per value, so captions of one clip differ and words are not one-to-one labels
WORDS: dict[str, dict[str, list[str]]] = {
    "family": {
        "piano": ["piano", "grand piano", "acoustic piano"], "organ": ["organ", "electric organ", "drawbar organ"],
        "strings": ["strings", "string ensemble", "string section"], "flute": ["flute", "solo flute", "wooden flute"],
        "brass": ["brass", "brass section", "horns"], "guitar": ["guitar", "nylon guitar", "acoustic guitar"],
        "bells": ["bells", "tubular bells", "chimes"],
    },
    "register": {"low": ["low", "deep", "bass"], "middle": ["middle", "mid-range", "medium"], "high": ["high", "upper", "treble"]},
    "tempo": {"slow": ["slow", "unhurried", "leisurely"], "moderate": ["moderate", "medium-paced", "steady"], "fast": ["fast", "quick", "lively"]},
    "dynamics": {"soft": ["soft", "quiet", "gentle"], "loud": ["loud", "powerful", "forceful"]},
    "articulation": {"staccato": ["staccato", "short detached", "choppy"], "legato": ["legato", "smooth connected", "flowing"]},
    "mode": {"major": ["major", "happy major", "bright major"], "minor": ["minor", "sad minor", "melancholic minor"]},
}  # fmt: skip
TEMPLATES = (
    "a {tempo} {dynamics} {family} melody in a {register} register, played {articulation}, in a {mode} key",
    "{dynamics} {family} playing {articulation} notes in a {register} register at a {tempo} tempo, {mode} mode",
    "{mode} {family} tune, {tempo} and {dynamics}, with {articulation} phrasing in the {register} range",
    "this is a {family} piece in a {mode} key; the {register} notes are {articulation}, {dynamics} and {tempo}",
    "{tempo} {mode} music on {family}, {dynamics}, {articulation}, {register} pitched",
    "a recording of {family} with a {register} {mode} melody, {tempo} tempo, {dynamics} dynamics and {articulation} notes",
)


@dataclass
class ClipSpec:
    index: int
    family: str
    register: str
    tempo: str
    dynamics: str
    articulation: str
    mode: str
    bpm: float
    notes: list[tuple[float, float, int, int]]  # (onset s, duration s, MIDI pitch, velocity)
    captions: list[str]


def clip_spec(seed: int, index: int, seconds: float, captions_per_clip: int) -> ClipSpec:
    """Attributes, notes and captions of clip ``index``: a function of (seed, index) only."""
    rng = np.random.default_rng([seed, index])
    attrs = {
        "family": str(rng.choice(list(FAMILIES))), "register": str(rng.choice(list(REGISTERS))),
        "tempo": str(rng.choice(list(TEMPI))), "dynamics": str(rng.choice(list(DYNAMICS))),
        "articulation": str(rng.choice(list(ARTICULATIONS))), "mode": str(rng.choice(list(MODES))),
    }  # fmt: skip
    bpm = float(rng.uniform(*TEMPI[attrs["tempo"]]))
    tonic = int(rng.integers(*REGISTERS[attrs["register"]], endpoint=True))
    scale = MODES[attrs["mode"]]
    step = 60.0 / bpm / 2  # eighth notes
    sounding = ARTICULATIONS[attrs["articulation"]]
    low_v, high_v = DYNAMICS[attrs["dynamics"]]
    notes: list[tuple[float, float, int, int]] = []
    degree, t = 0, 0.0
    while t < seconds - step / 2:
        slots = int(rng.choice([1, 1, 2, 2, 4]))  # eighth, quarter or half note
        octave, d = divmod(degree, 7)
        pitch = tonic + 12 * octave + scale[d]
        notes.append((t, slots * step * sounding, pitch, int(rng.integers(low_v, high_v, endpoint=True))))
        t += slots * step
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]), -3, 10))  # a bounded random walk
    captions = []
    for _ in range(captions_per_clip):
        words = {k: str(rng.choice(WORDS[k][v])) for k, v in attrs.items()}
        captions.append(str(rng.choice(TEMPLATES)).format(**words))
    return ClipSpec(index, **attrs, bpm=bpm, notes=notes, captions=captions)


# ---- numpy synthesis ------------------------------------------------------------------------------------------------


def _hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def _voice(family: str, f0: float, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of a family's numpy voice, including its release tail."""
    tail = {"piano": 0.4, "guitar": 0.5, "bells": 1.2}.get(family, 0.08)
    n = int((duration + tail) * sr)
    t = np.arange(n) / sr
    release = np.where(t < duration, 1.0, np.exp(-(t - duration) / 0.03))
    if family == "piano":  # additive, 1/k harmonics with faster decay for higher ones, hammer transient
        wave = sum(np.sin(2 * np.pi * k * f0 * t) / k * np.exp(-t * (1.5 + 0.8 * k)) for k in range(1, 9) if k * f0 < sr / 2)
        env = np.minimum(1.0, t / 0.004) * release
    elif family == "organ":  # drawbar-like sustained harmonics 1, 2, 3, 4, 8; no decay
        wave = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5), (8, 0.3)) if k * f0 < sr / 2)
        env = np.minimum(1.0, t / 0.01) * release
    elif family == "strings":  # band-limited sawtooth with vibrato and a slow bow attack
        phase = 2 * np.pi * f0 * t + (0.004 * f0 / 5.5) * np.sin(2 * np.pi * 5.5 * t) * 2 * np.pi
        wave = sum(np.sin(k * phase) / k for k in range(1, 16) if k * f0 < sr / 2)
        env = np.minimum(1.0, t / 0.12) * release
    elif family == "flute":  # near-sinusoid with weak 2nd/3rd harmonics and breath noise
        phase = 2 * np.pi * f0 * t + 0.02 * np.sin(2 * np.pi * 5.0 * t)
        wave = np.sin(phase) + 0.2 * np.sin(2 * phase) + 0.05 * np.sin(3 * phase) + 0.05 * rng.standard_normal(n)
        env = np.minimum(1.0, t / 0.06) * release
    elif family == "brass":  # FM (ratio 1) with the index following the envelope: brighter when louder
        env = np.minimum(1.0, t / 0.05) * release
        wave = np.sin(2 * np.pi * f0 * t + 3.0 * env * np.sin(2 * np.pi * f0 * t))
    elif family == "guitar":  # Karplus-Strong plucked string
        period = max(2, int(round(sr / f0)))
        buf = rng.uniform(-1, 1, period)
        wave = np.empty(n)
        for i in range(n):
            wave[i] = buf[i % period]
            buf[i % period] = 0.996 * 0.5 * (buf[i % period] + buf[(i + 1) % period])
        env = np.minimum(1.0, t / 0.002) * np.where(t < duration + 0.3, 1.0, np.exp(-(t - duration - 0.3) / 0.05))
    elif family == "bells":  # inharmonic FM (ratio 3.5), long exponential decay
        env = np.exp(-t * 2.0) * np.minimum(1.0, t / 0.002)
        wave = np.sin(2 * np.pi * f0 * t + 2.0 * np.exp(-t * 3.0) * np.sin(2 * np.pi * 3.5 * f0 * t))
    else:
        raise ValueError(f"unknown instrument family {family!r}; known: {', '.join(FAMILIES)}")
    return np.asarray(wave, dtype=np.float64) * env


def synthesize(spec: ClipSpec, seconds: float, sample_rate: int) -> np.ndarray:
    """Numpy rendering of a clip: each note's voice scaled by velocity (dynamics are audible as level)."""
    rng = np.random.default_rng([spec.index, 7])
    out = np.zeros(int(seconds * sample_rate) + 3 * sample_rate)
    for onset, duration, pitch, velocity in spec.notes:
        voice = _voice(spec.family, _hz(pitch), duration, sample_rate, rng)
        voice /= max(1e-9, np.abs(voice).max())
        start = int(onset * sample_rate)
        out[start : start + len(voice)] += (velocity / 127.0) ** 2 * voice
    return (0.3 * out[: int(seconds * sample_rate)]).astype(np.float32)


# ---- fluidsynth rendering -------------------------------------------------------------------------------------------


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(specs: list[ClipSpec], slot_seconds: float, ticks_per_beat: int = 480) -> bytes:
    """A format-0 Standard MIDI File playing ``specs`` one after another, clip k starting at k·``slot_seconds``, on
    channel 0 (channel 9 is GM percussion). The MIDI tempo is fixed at 120 bpm and note times are the clips' own
    seconds, so each clip keeps its tempo. Each clip starts with "all sound off" and its program change, so no tail
    of the previous clip leaks in."""
    ticks_per_second = 2 * ticks_per_beat  # 120 bpm
    events: list[tuple[int, int, bytes]] = []  # (tick, order, bytes): controls, then note-offs, then note-ons
    for k, spec in enumerate(specs):
        base = round(k * slot_seconds * ticks_per_second)
        events += [(base, 0, bytes([0xB0, 120, 0])), (base, 1, bytes([0xC0, FAMILIES[spec.family]]))]
        for onset, duration, pitch, velocity in spec.notes:
            on = base + round(onset * ticks_per_second)
            off = base + round((onset + duration) * ticks_per_second)
            events += [(on, 3, bytes([0x90, pitch, velocity])), (max(off, on + 1), 2, bytes([0x80, pitch, 0]))]
    events.sort(key=lambda e: (e[0], e[1]))
    track = b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big")
    last = 0
    for tick, _, data in events:
        track += _varlen(tick - last) + data
        last = tick
    track += _varlen(round(slot_seconds * ticks_per_second)) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat) + b"MTrk" + struct.pack(">I", len(track)) + track


def fluidsynth_available(soundfont: str = SOUNDFONT) -> bool:
    return shutil.which("fluidsynth") is not None and Path(soundfont).is_file()


def render_fluidsynth(specs: list[ClipSpec], seconds: float, sample_rate: int, soundfont: str = SOUNDFONT) -> list[np.ndarray]:
    """Render clips with fluidsynth in one call (loading the 145 MB soundfont costs ~1 s, rendering far less), then
    cut each clip's window out of the long render. A clip's audio depends only on the clips of its chunk, which is
    fixed by the clip indices, so a resumed build renders identical audio."""
    import soundfile as sf

    slot = seconds + 1.0
    with tempfile.TemporaryDirectory(prefix="zoo-fluidsynth-") as tmp:
        mid, wav = Path(tmp) / "clips.mid", Path(tmp) / "clips.wav"
        mid.write_bytes(midi_file(specs, slot))
        # no reverb/chorus (-R 0 -C 0): the dry instrument, deterministic; fixed gain so velocity = level
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate), "-F", str(wav), soundfont, str(mid)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"fluidsynth failed on clips {specs[0].index}..{specs[-1].index}: {result.stderr.strip()[:300]}")
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz, asked for {sample_rate}")
    mono = data.mean(axis=1)
    n = int(seconds * sample_rate)
    waves = []
    for k in range(len(specs)):
        start = int(round(k * slot * sample_rate))
        piece = mono[start : start + n]
        waves.append(np.pad(piece, (0, n - len(piece))).astype(np.float32))
    return waves


# ---- the build --------------------------------------------------------------------------------------------------------


def _readable(path: Path) -> bool:
    import soundfile as sf

    try:
        return sf.info(str(path)).frames > 0
    except Exception:
        return False


def _write_atomic_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def build(
    directory: str | Path,
    num_clips: int = 1000,
    seconds: float = 3.0,
    sample_rate: int = 16000,
    captions_per_clip: int = 3,
    test_fraction: float = 0.2,
    seed: int = 0,
    renderer: str = "auto",
    log: bool = False,
) -> dict[str, object]:
    """Build (or resume) the set in ``directory``; returns the meta dict written to ``meta.json``."""
    if num_clips < 2 or seconds <= 0 or captions_per_clip < 1 or not 0 < test_fraction < 1:
        raise ValueError(
            f"need num_clips >= 2, seconds > 0, captions_per_clip >= 1, 0 < test_fraction < 1; got {num_clips}, "
            f"{seconds}, {captions_per_clip}, {test_fraction}"
        )
    if renderer == "auto":
        renderer = "fluidsynth" if fluidsynth_available() else "numpy"
    if renderer not in ("fluidsynth", "numpy"):
        raise ValueError(f"renderer must be auto, fluidsynth or numpy, got {renderer!r}")
    if renderer == "fluidsynth" and not fluidsynth_available():
        raise ValueError(f"renderer=fluidsynth needs the fluidsynth command and {SOUNDFONT} (apt-get install fluidsynth fluid-soundfont-gm)")
    import soundfile as sf

    root = Path(directory).expanduser()
    (root / "audio").mkdir(parents=True, exist_ok=True)
    meta = {
        "num_clips": num_clips, "seconds": seconds, "sample_rate": sample_rate, "captions_per_clip": captions_per_clip,
        "test_fraction": test_fraction, "seed": seed, "renderer": renderer,
        "soundfont": SOUNDFONT if renderer == "fluidsynth" else None,
    }  # fmt: skip
    meta_path = root / "meta.json"
    if meta_path.is_file():
        previous = json.loads(meta_path.read_text())
        differing = {k: (previous.get(k), v) for k, v in meta.items() if previous.get(k) != v}
        if differing:
            raise ValueError(f"{root} holds a set built with other settings {differing} (old, new); use another folder")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    rows: dict[str, list[list[str]]] = {"train": [], "test": []}
    written = skipped = 0
    start = time.perf_counter()
    chunk = 50  # clips per fluidsynth call; fixed, so chunks (and their audio) are the same on resume
    for first in range(0, num_clips, chunk):
        specs = [clip_spec(seed, i, seconds, captions_per_clip) for i in range(first, min(first + chunk, num_clips))]
        paths = [root / f"audio/{spec.index:05d}.wav" for spec in specs]
        todo = [k for k, path in enumerate(paths) if not _readable(path)]
        skipped += len(specs) - len(todo)
        if todo:
            if renderer == "fluidsynth":
                waves = render_fluidsynth(specs, seconds, sample_rate)
            else:
                waves = {k: synthesize(specs[k], seconds, sample_rate) for k in todo}  # type: ignore[assignment]
            for k in todo:
                tmp = paths[k].with_name(f".{paths[k].stem}.tmp-{os.getpid()}.wav")
                sf.write(str(tmp), np.clip(waves[k], -1.0, 1.0), sample_rate, subtype="PCM_16")
                os.replace(tmp, paths[k])
            written += len(todo)
        for spec in specs:
            # the split is a function of (seed, index) too: a clip stays in its split on resume
            split = "test" if np.random.default_rng([seed, spec.index, 1]).random() < test_fraction else "train"
            attrs = asdict(spec)
            for caption in spec.captions:
                rows[split].append([f"audio/{spec.index:05d}.wav", caption, spec.family, *(str(attrs[a]) for a in ATTRIBUTES)])
        if log:
            print(f"{first + len(specs)}/{num_clips} clips ({time.perf_counter() - start:.0f} s)", flush=True)
    header = ["audio_path", "caption", "label", *ATTRIBUTES]
    for split, split_rows in rows.items():
        _write_atomic_csv(root / f"{split}.csv", header, split_rows)
    return {**meta, "written": written, "skipped": skipped}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo data build music-captions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory")
    parser.add_argument("--num-clips", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--captions-per-clip", type=int, default=3)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renderer", choices=("auto", "fluidsynth", "numpy"), default="auto")
    args = parser.parse_args(argv)
    result = build(
        args.directory, args.num_clips, args.seconds, args.sample_rate, args.captions_per_clip, args.test_fraction,
        args.seed, args.renderer, log=True,
    )  # fmt: skip
    print(f"music-captions in {args.directory}: {result['written']} clips written, {result['skipped']} already there, renderer {result['renderer']}")
    return 0
