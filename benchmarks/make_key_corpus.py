"""Render extra key-estimation dev material with exact ground truth.

Usage: ``python benchmarks/make_key_corpus.py OUTDIR [--n-classical 40] [--n-pop 48]``

Writes ``OUTDIR/audio/*.flac`` (mono, 22050 Hz, at most 60 s) and ``OUTDIR/annotations.csv`` with the
dev-set columns ``file,bpm,key,source``. Write it outside the repo. Two sources:

``classical``
    Non-chorale pieces of the music21 corpus (Beethoven, Haydn, Mozart, Schumann, Corelli, Handel,
    Joplin, ...), opening 60 s, transposed so that tonics cover all 12 pitch classes, with a General
    MIDI instrument drawn per part. Key = key signature of the score, mode = the one whose tonic is
    the bass note of the final chord (pieces where neither tonic matches are skipped). A third of
    them get a synthetic drum loop mixed in (source ``classical_drums``).
``pop``
    Generated pop/EDM-style songs: a common chord loop in a major or minor key (I-V-vi-IV,
    i-VI-III-VII, i-iv-v-i, ...), bass on the chord roots, a pad, an arpeggio and a scale melody
    that starts and ends on the tonic, GM synth and band instruments, plus a four-on-the-floor
    drum loop. Key = the key the song was generated in; both modes in all 12 tonics.

Needs ``music21`` (pip), ``fluidsynth`` and a General MIDI soundfont (Debian ``fluidsynth``,
``fluid-soundfont-gm``, ``timgm6mb-soundfont``). Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050
MAX_S = 60.0
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
CLASSICAL_DIRS = ("beethoven", "haydn", "mozart", "schumann_robert", "schumann_clara", "corelli", "handel",
                  "joplin", "chopin", "schubert", "verdi", "weber", "beach", "cpebach", "johnson_j_r",
                  "liliuokalani", "leadSheet")
CLASSICAL_PROGRAMS = (0, 4, 6, 19, 40, 42, 48, 49, 52, 68, 71, 73, 24, 46)
# (degree offsets of chord roots in semitones, chord qualities) for each mode
POP_LOOPS = {
    "major": [((0, 7, 9, 5), "MMmM"), ((0, 5, 7, 0), "MMMM"), ((0, 9, 5, 7), "MmMM"), ((0, 5, 9, 7), "MMmM")],
    "minor": [((0, 8, 3, 10), "mMMM"), ((0, 5, 7, 0), "mmmm"), ((0, 10, 8, 10), "mMMM"), ((0, 8, 5, 7), "mMmM"),
              ((0, 5, 8, 7), "mmMM")],
}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
POP_PROGRAMS = {"pad": (88, 89, 90, 50, 48, 16, 4), "arp": (81, 80, 0, 5, 24, 11, 82),
                "lead": (81, 80, 73, 56, 65, 0, 85), "bass": (38, 39, 33, 34, 87)}


def render_midi(midi_path: Path, sf2: str, seconds: float = MAX_S) -> np.ndarray:
    """Render a MIDI file to mono float32 at SR with fluidsynth."""
    wav = midi_path.with_suffix(".wav")
    subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SR), "-F", str(wav), sf2, str(midi_path)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    y, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == SR
    return y.mean(axis=1)[: int(seconds * SR)]


def drum_loop(n: int, bpm: float, rng: np.random.Generator) -> np.ndarray:
    """A four-on-the-floor kick, off-beat open hats and a clap on 2 and 4."""
    out = np.zeros(n, np.float32)
    beat = int(round(60.0 / bpm * SR))
    t = np.arange(int(0.35 * SR)) / SR
    f = 45 + 90 * np.exp(-t * 30)  # a pitch drop, as a real kick
    kick = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t * 9)
    th = np.arange(int(0.08 * SR)) / SR
    hat = np.diff(rng.standard_normal(len(th) + 1)) * np.exp(-th * 50) * 0.25
    tc = np.arange(int(0.2 * SR)) / SR
    clap = rng.standard_normal(len(tc)) * np.exp(-tc * 25) * 0.35
    for i, start in enumerate(range(0, n, beat)):
        for snd, off in ((kick, 0), (hat, beat // 2)) + (((clap, 0),) if i % 2 else ()):
            s = start + off
            m = min(len(snd), n - s)
            if m > 0:
                out[s:s + m] += snd[:m]
    return out


def classical_items(rng: np.random.Generator, n_items: int, workdir: Path):
    """Yield (audio, key, source, bpm) for music21 corpus pieces."""
    from music21 import corpus, instrument, tempo
    from music21 import key as m21key

    paths = sorted(str(p) for p in corpus.getPaths() if any(f"/corpus/{d}/" in str(p) for d in CLASSICAL_DIRS)
                   and str(p).endswith((".mxl", ".xml", ".musicxml", ".krn")) and "opus13" not in str(p))
    rng.shuffle(paths)
    made = 0
    for i, path in enumerate(paths):
        if made >= n_items:
            return
        try:
            score = corpus.parse(path)
        except Exception as exc:  # a few corpus files do not parse in every music21 version
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        sigs = list(score.recurse().getElementsByClass(m21key.KeySignature))
        n_bars = len(score.parts[0].getElementsByClass("Measure")) if score.parts else 0
        if not sigs or n_bars < 8:
            continue
        # chordify only the last bars (cheap) for the final bass; render only the opening bars.
        chords = score.measures(n_bars - 1, n_bars).chordify().recurse().notes
        if not chords:
            continue
        score = score.measures(1, 48)
        ks = sigs[0]
        bass_pc = min(chords[-1].pitches).pitchClass
        cands = {"major": ks.asKey("major").tonic.pitchClass, "minor": ks.asKey("minor").tonic.pitchClass}
        modes = [m for m, pc in cands.items() if pc == bass_pc]
        if len(modes) != 1:
            continue
        mode = modes[0]
        target = made % 12
        shift = (target - cands[mode]) % 12
        shift = shift - 12 if shift > 6 else shift
        score = score.transpose(shift)
        for part in score.parts:
            for inst in list(part.recurse().getElementsByClass(instrument.Instrument)):
                part.remove(inst, recurse=True)
            ins = instrument.Instrument()
            ins.midiProgram = int(rng.choice(CLASSICAL_PROGRAMS))
            part.insert(0, ins)
        marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
        bpm = float(marks[0].number) if marks and marks[0].number else 120.0
        midi = workdir / f"c{i}.mid"
        try:
            score.write("midi", fp=str(midi))
            y = render_midi(midi, SOUNDFONTS[made % 2])
        except Exception as exc:
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        if len(y) < 20 * SR:
            continue
        source = "classical"
        if made % 3 == 2:
            y = y / (np.abs(y).max() + 1e-9) + 0.6 * drum_loop(len(y), bpm, rng)
            source = "classical_drums"
        made += 1
        name = path.split("/corpus/")[1]
        print(f"classical {made}: {name} -> {NAMES[target]} {mode}", file=sys.stderr)
        yield y, f"{NAMES[target]} {mode}", source, bpm


def pop_song(tonic: int, mode: str, rng: np.random.Generator, workdir: Path, idx: int) -> tuple[np.ndarray, float]:
    """Generate and render one pop/EDM-style loop song in a known key."""
    from music21 import chord, instrument, note, stream, tempo

    bpm = float(rng.choice([100, 110, 120, 124, 126, 128, 140]))
    roots, quals = POP_LOOPS[mode][rng.integers(len(POP_LOOPS[mode]))]
    scale = SCALES[mode]
    bars = int(np.ceil(MAX_S / (4 * 60.0 / bpm))) + 1
    parts = {name: stream.Part() for name in ("pad", "arp", "lead", "bass")}
    for name, part in parts.items():
        ins = instrument.Instrument()
        ins.midiProgram = int(rng.choice(POP_PROGRAMS[name]))
        part.insert(0, ins)
    base = 48 + tonic if tonic < 7 else 36 + tonic  # keep the pad between C3 and B4
    for bar in range(bars):
        r, q = roots[bar % 4], quals[bar % 4]
        third = 4 if q == "M" else 3
        triad = [base + r, base + r + third, base + r + 7]
        triad = [p - 12 if p > base + 14 else p for p in triad]
        off = bar * 4.0
        parts["pad"].insert(off, chord.Chord(triad, quarterLength=4.0))
        for k in range(8):
            parts["arp"].insert(off + k * 0.5, note.Note(sorted(triad)[k % 3] + 12, quarterLength=0.5))
        for k in range(4):
            parts["bass"].insert(off + k, note.Note(base + r - 24 + (12 if base + r - 24 < 28 else 0),
                                                    quarterLength=1.0))
        if bar % 8 < 4:  # the melody comes and goes, as in an arrangement
            for k in range(4):
                if bar % 4 == 3 and k == 3:
                    deg = 0  # phrases end on the tonic
                else:
                    deg = int(rng.choice([0, 2, 4, 1, 3, 5, 6], p=[.25, .2, .2, .1, .1, .1, .05]))
                parts["lead"].insert(off + k, note.Note(base + 12 + scale[deg], quarterLength=1.0))
    s = stream.Score()
    s.insert(0, tempo.MetronomeMark(number=bpm))
    for part in parts.values():
        s.insert(0, part)
    midi = workdir / f"p{idx}.mid"
    s.write("midi", fp=str(midi))
    y = render_midi(midi, SOUNDFONTS[idx % 2])
    return y, bpm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--n-classical", type=int, default=40)
    ap.add_argument("--n-pop", type=int, default=48)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    (args.outdir / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def emit(y: np.ndarray, key: str, source: str, bpm: float) -> None:
            name = f"audio/item_{len(rows) + 1:03d}.flac"
            sf.write(args.outdir / name, (0.9 * y / (np.abs(y).max() + 1e-9)).astype(np.float32), SR)
            rows.append({"file": name, "bpm": round(bpm, 2), "key": key, "source": source})

        for i in range(args.n_pop):
            mode = ("major", "minor")[i % 2]
            tonic = (i // 2 * 7) % 12  # walk the circle of fifths: every tonic in both modes by i = 23
            y, bpm = pop_song(tonic, mode, rng, work, i)
            y = y / (np.abs(y).max() + 1e-9) + float(rng.uniform(0.3, 0.8)) * drum_loop(len(y), bpm, rng)
            emit(y, f"{NAMES[tonic]} {mode}", "pop", bpm)
            print(f"pop {i + 1}: {NAMES[tonic]} {mode}", file=sys.stderr)
        for y, key, source, bpm in classical_items(rng, args.n_classical, work):
            emit(y, key, source, bpm)
    with open(args.outdir / "annotations.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "bpm", "key", "source"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} items to {args.outdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
