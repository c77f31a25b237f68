"""The built-in demo library: a few dozen short tagged tracks in several formats, some broken.

>>> import tempfile
>>> n = make_demo_library(tempfile.mkdtemp(), n_tracks=3, seconds=2.0)
>>> n >= 3
True
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from crate_dask.library.tags import write_tags
from crate_dask.synth import PITCH_CLASSES, track

# (extension, soundfile format, subtype, sample rate)
FORMATS = [("mp3", "MP3", "MPEG_LAYER_III", 44100), ("flac", "FLAC", "PCM_16", 44100),
           ("wav", "WAV", "PCM_16", 44100), ("ogg", "OGG", "VORBIS", 44100), ("aiff", "AIFF", "PCM_16", 44100),
           ("m4a", None, None, 44100), ("opus", "OGG", "OPUS", 48000)]
ARTISTS = ["Kollektiv Turmstrasse", "Ame", "Dixon", "Charlotte de Witte", "Bicep", "Peggy Gou", "Solomun",
           "Nina Kraviz", "DJ Koze", "Sébastien Léger", "Âme & Ümlaut", "AC/DC Tribute"]


def write_audio(path: str | os.PathLike, y: np.ndarray, sr: int) -> None:
    """Write mono float audio to ``path``; the format follows the extension (M4A/AAC through PyAV)."""
    ext = str(path).rsplit(".", 1)[-1].lower()
    if ext in ("m4a", "mp4", "aac"):
        _write_m4a(path, y, sr)
        return
    fmt = {e: (f, s) for e, f, s, _ in FORMATS if f}
    f, subtype = fmt.get(ext, (None, None))
    sf.write(path, y, sr, format=f, subtype=subtype)


def _write_m4a(path: str | os.PathLike, y: np.ndarray, sr: int) -> None:
    import av

    with av.open(str(path), "w", format="ipod") as c:
        s = c.add_stream("aac", rate=sr, layout="mono")
        y = np.ascontiguousarray(y, dtype=np.float32)
        for i in range(0, len(y), 1024):
            fr = av.AudioFrame.from_ndarray(y[None, i:i + 1024], format="fltp", layout="mono")
            fr.sample_rate, fr.pts = sr, i
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def make_demo_library(root: str | os.PathLike, *, n_tracks: int = 36, seconds: float = 20.0) -> int:
    """Generate ``n_tracks`` tagged tracks (drums + chords, known BPM and key) plus 4 broken files.

    Existing files are kept, so calling it twice is cheap. Returns the number of audio files.
    """
    root = Path(root)
    rng = np.random.default_rng(7)
    count = 0
    for i in range(n_tracks):
        ext, _, _, sr = FORMATS[i % len(FORMATS)]
        bpm = float(rng.choice([85.0, 98.0, 110.0, 120.0, 122.0, 124.0, 126.0, 128.0, 130.0, 140.0, 174.0]))
        key = f"{PITCH_CLASSES[int(rng.integers(12))]} {'minor' if rng.random() < 0.6 else 'major'}"
        artist = ARTISTS[i % len(ARTISTS)]
        genre = ["House", "Techno", "Deep House", "Drum & Bass", "Disco"][i % 5]
        title = f"Demo Track {i + 1:02d}"
        path = root / genre.replace(" & ", " and ") / f"{artist.replace('/', '-')} - {title}.{ext}"
        count += 1
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(path, track(bpm=bpm, key=key, seconds=seconds, sr=sr, seed=i), sr)
        tags = {"artist": artist, "title": title, "album": "crate_dask demo", "genre": genre,
                "year": 2020 + i % 6, "track": i + 1}
        if i % 3 == 0:   # some files already carry BPM/key tags, as from other DJ software
            tags.update(bpm=round(bpm), key=key)
        write_tags(path, tags)
    broken = root / "Broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "empty.mp3").write_bytes(b"")
    (broken / "not really audio.mp3").write_text("This is a text file with an .mp3 name.\n")
    good = next(root.rglob("*.flac"), None)
    if good is not None and not (broken / "truncated.flac").exists():
        (broken / "truncated.flac").write_bytes(good.read_bytes()[:3000])
    if not (broken / "silence.wav").exists():
        sf.write(broken / "silence.wav", np.zeros(44100 * 5, np.float32), 44100)
    return count + 4
