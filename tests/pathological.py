"""Real pathological audio files, built byte by byte (the conditions the pipeline must survive)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf


def pcm_wav(seconds: float = 0.1, sr: int = 22050) -> bytes:
    """A small valid 16-bit mono WAV."""
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def wav_with_empty_chunks(path: Path, n_chunks: int) -> Path:
    """A valid WAV with ``n_chunks`` empty ``junk`` chunks before its audio.

    mutagen builds a Python object per chunk: each costs about 80 us and 0.5 KiB
    (a 40 MB file of them takes half a minute and gigabytes), libsndfile skips them.
    """
    wav = pcm_wav()
    fmt_end = 12 + 8 + struct.unpack("<I", wav[16:20])[0]
    body = wav[12:fmt_end] + b"junk\0\0\0\0" * n_chunks + wav[fmt_end:]
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    return path


def streamed_wav(path: Path, size_field: int, seconds: float = 2.0) -> Path:
    """A WAV as a program writing to a pipe leaves it: RIFF and data sizes are placeholders (0 or 0xFFFFFFFF)."""
    wav = bytearray(pcm_wav(seconds))
    data = wav.index(b"data")
    wav[4:8] = struct.pack("<I", size_field)
    wav[data + 4:data + 8] = struct.pack("<I", size_field)
    path.write_bytes(bytes(wav))
    return path
