"""Real re-encodings of a track with PyAV's bundled FFmpeg: another codec, another bitrate, trimmed silence.

Used by the duplicate tests and by ``benchmarks/duplicates.py`` (soundfile's Vorbis writer crashes on long
stereo input and the wheel has no libvorbis encoder; FFmpeg is what produced most of the re-encodings in a real library anyway).
"""

from __future__ import annotations

import os

import numpy as np

#: extension -> (container, codec, default bitrate)
CODECS = {"mp3": ("mp3", "libmp3lame", 192_000), "m4a": ("ipod", "aac", 128_000),
          "opus": ("ogg", "libopus", 96_000),
          "flac": ("flac", "flac", None)}


def decode(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The whole file as float32 (channels, n) and its sample rate."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        sr = s.codec_context.sample_rate
        chunks = []
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=sr)
        for frame in c.decode(s):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray())
    return np.concatenate(chunks, axis=1).astype(np.float32), sr


def encode(y: np.ndarray, sr: int, path: str | os.PathLike, *, bitrate: int | None = None) -> str:
    """Write (channels, n) float32 audio to ``path``; the codec follows the extension."""
    import av

    ext = str(path).rsplit(".", 1)[-1].lower()
    container, codec, default = CODECS[ext]
    rate = 48000 if codec == "libopus" else sr
    y = np.ascontiguousarray(np.atleast_2d(y), dtype=np.float32)
    layout = "stereo" if y.shape[0] == 2 else "mono"
    with av.open(str(path), "w", format=container) as c:
        s = c.add_stream(codec, rate=rate, layout=layout)
        if bitrate or default:
            s.bit_rate = bitrate or default
        resampler = av.AudioResampler(format=s.format.name, layout=layout, rate=rate)
        step = 4096
        for i in range(0, y.shape[1], step):
            fr = av.AudioFrame.from_ndarray(y[:, i:i + step], format="fltp", layout=layout)
            fr.sample_rate = sr
            for f in resampler.resample(fr):
                for p in s.encode(f):
                    c.mux(p)
        for f in resampler.resample(None):
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return str(path)


def trim(y: np.ndarray, sr: int, *, start_s: float = 0.0, end_s: float = 0.0) -> np.ndarray:
    """``y`` without its first ``start_s`` and last ``end_s`` seconds."""
    a, b = int(start_s * sr), y.shape[-1] - int(end_s * sr)
    return y[..., a:b]


def pad_silence(y: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    """``y`` with ``seconds`` of silence before it (the opposite of a trimmed intro)."""
    z = np.zeros(y.shape[:-1] + (int(seconds * sr),), np.float32)
    return np.concatenate([z, y], axis=-1)
