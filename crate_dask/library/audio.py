"""Decode audio files to a mono float excerpt at a low sample rate: a thin I/O wrapper.

Each file is decoded once, and only the part that the analysis needs: by
default a window of ``excerpt_s`` seconds from the middle of the track (DJ
tracks have beat-less intros and outros), reached by seeking rather than by
decoding everything before it.

Two decoders cover what DJs meet:

* ``soundfile`` (libsndfile: WAV, AIFF, FLAC, OGG Vorbis, MP3);
* PyAV (``av``), which bundles its own FFmpeg, so M4A/AAC, ALAC, WMA and the
  rest decode without a system ``ffmpeg``. Opus goes here too: libsndfile
  reads it, but FFmpeg's decoder costs a third of the CPU time.

The decoder is chosen by sniffing the first bytes of the file (never from the
extension, which lies), and the other one is tried if the first fails. Every
failure becomes :class:`crate_dask.errors.DecodeError`.

**Time base.** Times (``offset_s``, and the beat grid computed from the
excerpt) are in the *gapless decoded timeline*: both decoders drop the samples
the encoder put before the music when the file says how many. For MP3 that is
the LAME/Xing ("Info") header in the first frame: libsndfile (through mpg123)
and FFmpeg both skip its encoder delay plus the 529-sample decoder delay
(measured: a click encoded at 1.000 s decodes at 1.000 s through either, also
after a seek to the middle). For AAC in MP4 it is the edit list / ``iTunSMPB``
(FFmpeg applies it; so do Apple's decoders). An MP3 without that header gives no
decoder a way to know the delay: the audio then sits ~1105 samples (25 ms at
44.1 kHz) late in every program's timeline alike, so the grid is right as it is.
The one known disagreement is rekordbox, which ignores the LAME gapless header
(release notes of 1.5.4: "disables gapless playback for MP3 files encoded with
the LAME encoder"), so its timeline for such files is later by the skipped
amount; :attr:`Excerpt.gapless_delay_s` reports it (see
:func:`mp3_gapless_delay`) and the rekordbox export adds it to the grid.

>>> import numpy as np, soundfile as sf, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "tone.flac")
>>> sf.write(p, np.zeros((44100 * 10, 2), dtype="float32"), 44100)
>>> ex = load_excerpt(p, sr=22050, excerpt_s=4.0)
>>> ex.y.shape, ex.y.dtype.name, ex.sr, ex.offset_s, ex.track_duration_s
((88200,), 'float32', 22050, 3.0, 10.0)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from crate_dask.errors import DecodeError

PathLike = str | os.PathLike | bytes

# A header that promises much more audio than the file holds means a
# truncated or damaged file: analysing the scrap that decodes would mislead.
_MIN_DECODED_FRACTION = 0.5
_SNIFF_BYTES = 64
#: How many short key windows are spread evenly over a track that is longer than its excerpt (at least).
KEY_WINDOWS = 48


class _Damaged(DecodeError):
    """A verdict on the file itself: the other decoder would not do better."""


@dataclass(frozen=True)
class Excerpt:
    """Decoded mono audio and where it sits in the track."""

    y: np.ndarray                  #: mono float32 samples
    sr: int                        #: sample rate of ``y``
    offset_s: float                #: where the excerpt starts in the track
    track_duration_s: float | None  #: whole-track duration from the header, if known
    gapless_delay_s: float = 0.0    #: MP3: start samples skipped per the LAME header (see the module notes)
    #: Short windows spread evenly over the whole track (``key_window_s`` long, ``KEY_WINDOWS`` of them), in
    #: time order; those inside the excerpt are cut from ``y``. The key is read from them alone: an even
    #: sample of the track, so that the key holds for the whole track, not for its middle.
    key_windows: tuple[np.ndarray, ...] = ()

    @property
    def duration_s(self) -> float:
        """Length of the excerpt in seconds."""
        return len(self.y) / self.sr


def load_excerpt(path: PathLike, *, sr: int = 22050, excerpt_s: float | None = 120.0,
                 key_window_s: float | None = None, key_windows: int = KEY_WINDOWS,
                 key_window_spacing_s: float | None = None) -> Excerpt:
    """Decode a window from the middle of an audio file to mono float32 at ``sr``.

    Parameters
    ----------
    path : str, os.PathLike or bytes
        The audio file. The format is sniffed from its content.
    sr : int > 0
        Output sample rate (resampled with soxr).
    excerpt_s : float > 0 or None
        Length of the window, centred on the middle of the track; tracks
        shorter than this are decoded whole. ``None`` decodes the whole track.
    key_window_s : float > 0 or None
        Also return ``key_windows`` windows of this length, centred evenly over the whole track, in
        ``Excerpt.key_windows`` (none when the excerpt is the whole track). Those inside the excerpt
        are cut from it; the others are decoded after a seek.
    key_windows : int >= 1
        How many key windows (at least, with ``key_window_spacing_s``).
    key_window_spacing_s : float > 0 or None
        A track longer than ``key_windows`` times this gets one window per ``key_window_spacing_s``
        seconds instead, up to ``2 * key_windows``: a long piece has more music to sample. None: always
        ``key_windows``.

    Returns
    -------
    Excerpt
        ``y`` (mono float32), ``sr``, ``offset_s`` of the window in the track,
        ``track_duration_s`` (``None`` when the container does not say).

    Raises
    ------
    DecodeError
        The file is missing, empty, not audio, corrupt or truncated, or holds
        no audio frames.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> t = np.arange(48000 * 2) / 48000
    >>> sf.write(p, np.sin(2 * np.pi * 440 * t), 48000)
    >>> ex = load_excerpt(p, sr=22050, excerpt_s=None)
    >>> ex.sr, round(ex.duration_s, 3)
    (22050, 2.0)
    """
    if sr <= 0:
        raise ValueError(f"sr must be positive, got {sr}")
    if excerpt_s is not None and excerpt_s <= 0:
        raise ValueError(f"excerpt_s must be positive or None, got {excerpt_s}")
    if key_window_s is not None and key_window_s <= 0:
        raise ValueError(f"key_window_s must be positive or None, got {key_window_s}")
    if key_windows < 1:
        raise ValueError(f"key_windows must be at least 1, got {key_windows}")
    if key_window_spacing_s is not None and key_window_spacing_s <= 0:
        raise ValueError(f"key_window_spacing_s must be positive or None, got {key_window_spacing_s}")
    windows = (key_window_s, key_windows, key_window_spacing_s)
    head = _read_head(path)
    order = (_decode_sndfile, _decode_av) if _sniff(head) == "sndfile" else (_decode_av, _decode_sndfile)
    problems = []
    for decode in order:
        try:
            y, sr_in, offset_s, track_s, expected_s, extra = decode(path, excerpt_s, windows)
        except _Damaged as exc:
            raise DecodeError(f"cannot decode audio: {exc}", error_type=exc.error_type) from None
        except DecodeError as exc:
            problems.append((str(exc), exc.error_type))
            continue
        if y.size == 0:
            problems.append((f"truncated: no audio at {offset_s:.1f} s of a track whose header announces "
                             f"{track_s:.1f} s", "truncated") if offset_s > 0 and track_s
                            else ("no audio frames", "undecodable"))
            continue
        got_s = len(y) / sr_in
        if expected_s is not None and got_s < _MIN_DECODED_FRACTION * expected_s:
            problems.append((f"truncated: decoded {got_s:.1f} s of the {expected_s:.1f} s expected", "truncated"))
            continue
        delay = mp3_gapless_delay(path) if _is_mpeg(head) else 0.0
        y = _resample(y, sr_in, sr)
        return Excerpt(y, sr, offset_s, track_s, delay, _key_audio(extra, y, sr, offset_s, sr_in, key_window_s))
    # The decoder that matched the sniffed format has the most relevant message.
    raise DecodeError(f"cannot decode audio: {problems[0][0]}", error_type=problems[0][1])


def _id3_size(head: bytes) -> int:
    """Bytes of an ID3v2 tag including its 10-byte header: the size is a "syncsafe" integer, 7 bits a byte.

    >>> _id3_size(b"ID3" + bytes([3, 0, 0, 0, 0, 9, 109]))
    1271
    """
    return sum((b & 0x7F) << (7 * (3 - k)) for k, b in enumerate(head[6:10])) + 10


def _is_mpeg(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and bool(head[1] & 0x06)


# Samples of MPEG audio side information before the Xing header: [MPEG-1, MPEG-2/2.5] x [stereo, mono].
_SIDE_INFO = {(True, False): 32, (True, True): 17, (False, False): 17, (False, True): 9}
_MP3_DECODER_DELAY = 529   # samples every MP3 decoder outputs before the first encoded one


def mp3_gapless_delay(path: PathLike) -> float:
    """Seconds at the start of an MP3 that a gapless decoder skips: LAME encoder delay + 529, else 0.

    Read from the LAME extension of the Xing/Info header in the first MPEG frame.
    0.0 when the file has no such header (or is not an MP3): nothing is skipped then.

    Examples
    --------
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.mp3")
    >>> sf.write(p, np.zeros(44100, np.float32), 44100, format="MP3")   # LAME writes its header
    >>> round(mp3_gapless_delay(p) * 44100)                             # 576 + 529 samples
    1105
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 16)
    except OSError:
        return 0.0
    i = _id3_size(data) if data[:3] == b"ID3" else 0
    while i < len(data) - 4 and not (data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0):
        i += 1           # taggers leave zeros (or junk) between the tag and the first frame
    if i >= len(data) - 4:
        return 0.0
    mpeg1, mono = data[i + 1] & 0x18 == 0x18, data[i + 3] >> 6 == 3
    rates = {0x18: (44100, 48000, 32000), 0x10: (22050, 24000, 16000), 0x00: (11025, 12000, 8000)}
    rate_i = (data[i + 2] >> 2) & 3
    if data[i + 1] & 0x18 not in rates or rate_i == 3:
        return 0.0
    sr = rates[data[i + 1] & 0x18][rate_i]
    x = i + 4 + _SIDE_INFO[mpeg1, mono]
    if data[x:x + 4] not in (b"Xing", b"Info") or len(data) < x + 8:
        return 0.0
    flags = int.from_bytes(data[x + 4:x + 8], "big")
    lame = x + 8 + 4 * (flags & 1) + 4 * (flags >> 1 & 1) + 100 * (flags >> 2 & 1) + 4 * (flags >> 3 & 1)
    d = data[lame + 21:lame + 24]
    if len(d) < 3 or not data[lame:lame + 4].isalpha():   # "LAME", "Lavc", "Lavf": a LAME extension follows
        return 0.0
    return (((d[0] << 4) | (d[1] >> 4)) + _MP3_DECODER_DELAY) / sr


def _read_head(path: PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            if head[:3] == b"ID3" and len(head) >= 10:
                # Skip the ID3v2 tag to see what audio follows it.
                size = _id3_size(head)
                fh.seek(size + (10 if head[5] & 0x10 else 0))
                # Taggers often pad with zeros after the tag; the audio starts after them.
                head = fh.read(4096).lstrip(b"\0")[:_SNIFF_BYTES]
                if not head:
                    raise DecodeError("tags but no audio data after them")
    except FileNotFoundError:
        raise DecodeError("file not found", error_type="vanished") from None
    except PermissionError:
        raise DecodeError("permission denied", error_type="permission") from None
    except IsADirectoryError:
        raise DecodeError("is a directory") from None
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None
    if not head:
        raise DecodeError("empty file (0 bytes)", error_type="unreadable")
    return head


def _sniff(head: bytes) -> str:
    """``sndfile`` for what libsndfile reads natively, else ``av``."""
    if head[:4] == b"OggS" and head[28:36] == b"OpusHead":
        # libsndfile decodes Opus too, but FFmpeg's decoder is 3x cheaper (measured).
        return "av"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"FORM", b"fLaC", b"OggS", b"caff", b".snd"):
        return "sndfile"
    # MPEG audio frame sync; layer bits 00 would be ADTS AAC, which needs FFmpeg.
    if _is_mpeg(head):
        return "sndfile"
    return "av"


def _window(track_s: float | None, excerpt_s: float | None) -> tuple[float, float | None]:
    """(offset_s, length_s or None for "to the end") of the middle window."""
    if excerpt_s is None or track_s is None or track_s <= excerpt_s:
        return 0.0, None
    return (track_s - excerpt_s) / 2.0, excerpt_s


def key_window_count(track_s: float, count: int, spacing_s: float | None) -> int:
    """How many key windows a track of ``track_s`` seconds gets: ``count``, or one per ``spacing_s`` of a
    longer track, at most ``2 * count`` (always ``count`` when ``spacing_s`` is None).

    >>> key_window_count(240.0, 48, 5.0), key_window_count(420.0, 48, 5.0), key_window_count(3600.0, 48, 5.0)
    (48, 84, 96)
    """
    if spacing_s is None:
        return count
    return int(min(2 * count, max(count, round(track_s / spacing_s))))


def _key_windows(track_s: float | None, length_s: float | None, key_window_s: float | None,
                 count: int, spacing_s: float | None = None) -> list[tuple[float, float]]:
    """(offset_s, length_s) of the key windows: ``count`` of them centred evenly over the track, in time order
    (one per ``spacing_s`` of a track longer than ``count * spacing_s``, at most ``2 * count``).

    None when the excerpt is the whole track (``length_s`` None): the key is then read from all of it.

    >>> _key_windows(300.0, 90.0, 2.0, 4)       # a 5-minute track: around 0:37, 1:52, 3:07 and 4:22
    [(36.5, 2.0), (111.5, 2.0), (186.5, 2.0), (261.5, 2.0)]
    >>> len(_key_windows(300.0, 90.0, 1.0, 4, spacing_s=60.0)), len(_key_windows(900.0, 90.0, 1.0, 4, 60.0))
    (5, 8)
    >>> _key_windows(300.0, None, 2.0, 4)
    []
    """
    if key_window_s is None or track_s is None or length_s is None or key_window_s >= track_s:
        return []
    count = key_window_count(track_s, count, spacing_s)
    return [(min(max(0.0, (i + 0.5) / count * track_s - key_window_s / 2), track_s - key_window_s), key_window_s)
            for i in range(count)]


def _read_key_windows(track_s: float | None, offset_s: float, length_s: float | None,
                      windows: tuple[float | None, int, float | None], read) -> list[tuple[float, np.ndarray | None]]:
    """``(offset_s, samples)`` of each key window, in time order: ``read(offset_s, length_s)`` decodes the ones
    outside the excerpt (``offset_s``, ``length_s``); the ones inside it get ``None`` (cut from it later)."""
    return [(o, None if _inside((o, n), offset_s, length_s) else read(o, n))
            for o, n in _key_windows(track_s, length_s, *windows)]


def _key_audio(extra: list[tuple[float, np.ndarray | None]], y: np.ndarray, sr: int, offset_s: float, sr_in: int,
               key_window_s: float | None) -> tuple[np.ndarray, ...]:
    """The key windows at ``sr`` from :func:`_read_key_windows`'s list: a decoded window is resampled, one
    inside the excerpt is cut from ``y`` (already at ``sr``). Windows cut short (the end of a truncated
    file) are left out."""
    out = []
    n = int(round((key_window_s or 0.0) * sr))
    for o, w in extra:
        if w is not None:
            w = _resample(w, sr_in, sr)
        else:
            start = int(np.clip(round((o - offset_s) * sr), 0, max(0, len(y) - n)))
            w = y[start:start + n]
        if len(w) >= n / 2:
            out.append(w)
    return tuple(out)


def _inside(span: tuple[float, float], offset_s: float, length_s: float | None) -> bool:
    """Whether ``span`` lies mostly within the excerpt, so that it is cut from it (moved inside) rather than decoded."""
    o, n = span
    return length_s is not None and min(o + n, offset_s + length_s) - max(o, offset_s) >= n / 2


def _decode_sndfile(path: PathLike, excerpt_s: float | None,
                    windows: tuple[float | None, int, float | None] = (None, KEY_WINDOWS, None)):
    try:
        with sf.SoundFile(os.fsencode(path) if not isinstance(path, bytes) else path) as f:
            sr_in, frames = f.samplerate, f.frames
            _check_chunk_sizes(f.extra_info)
            track_s = frames / sr_in if 0 < frames < 2**62 else None
            offset_s, length_s = _window(track_s, excerpt_s)
            start = int(round(offset_s * sr_in))
            y = _sf_read(f, start, -1 if length_s is None else int(round(length_s * sr_in)))
            extra = _read_key_windows(track_s, offset_s, length_s, windows,
                                      lambda o, n: _mono(_sf_read(f, int(round(o * sr_in)), int(round(n * sr_in)))))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as exc:
        raise DecodeError(f"libsndfile: {_short(exc)}") from None
    expected = (length_s if length_s is not None else track_s - offset_s) if track_s else None
    return _mono(y), sr_in, start / sr_in, track_s, expected, extra


def _sf_read(f: sf.SoundFile, start: int, n: int) -> np.ndarray:
    if start or f.tell():
        f.seek(start)
    return f.read(n, dtype="float32", always_2d=True)


# libsndfile silently clamps a WAV/AIFF data chunk to what the file holds, and
# logs "data : 882000 (should be 16)"; only its log tells a cut file from a short one.
_CHUNK_LOG = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _check_chunk_sizes(log: str) -> None:
    m = _CHUNK_LOG.search(log or "")
    if m:
        declared, actual = int(m.group(1)), int(m.group(2))
        # 0 and 0xFFFFFFFF are the placeholders of streamed WAVs, not truncation.
        if 0 < declared < 0xFFFFFF00 and actual < _MIN_DECODED_FRACTION * declared:
            raise _Damaged(f"truncated: the audio data is {actual} bytes, the header announces {declared}",
                           error_type="truncated")


def _decode_av(path: PathLike, excerpt_s: float | None,
               windows: tuple[float | None, int, float | None] = (None, KEY_WINDOWS, None)):
    import av  # imported lazily: only files libsndfile cannot read need FFmpeg

    try:
        with av.open(_av_source(path), metadata_errors="replace") as container:
            if not container.streams.audio:
                raise DecodeError("FFmpeg: no audio stream")
            stream = container.streams.audio[0]
            sr_in = stream.rate or stream.codec_context.sample_rate
            if not sr_in:
                raise DecodeError("FFmpeg: unknown sample rate")
            track_s = _av_duration(container, stream)
            offset_s, length_s = _window(track_s, excerpt_s)
            y = _av_read(container, stream, sr_in, offset_s, length_s)
            extra = _read_key_windows(track_s, offset_s, length_s, windows,
                                      lambda o, n: _av_read(container, stream, sr_in, o, n))
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError, TypeError) as exc:
        raise DecodeError(f"FFmpeg: {_short(exc)}") from None
    expected = (length_s if length_s is not None else track_s - offset_s) if track_s else None
    return y, sr_in, offset_s, track_s, expected, extra


def _av_read(container, stream, sr_in: int, offset_s: float, length_s: float | None) -> np.ndarray:
    """``length_s`` seconds (None: to the end) of mono audio from ``offset_s`` of an open container."""
    if offset_s > 0:
        # Seeks to the packet at or before the offset; the samples
        # before the offset are dropped below.
        container.seek(int(offset_s * 1_000_000))
    skip = None
    want = None if length_s is None else int(round(length_s * sr_in))
    # Frames are gathered raw and converted to mono in bulk, one run of frames of the same sample format at a
    # time: Opus and AAC frames hold 20-23 ms, and converting each on its own cost more than decoding it.
    runs: list[tuple[tuple, list[np.ndarray]]] = []
    have = 0
    for frame in container.decode(stream):
        a = frame.to_ndarray()
        fmt = (frame.format.name, frame.format.is_planar, frame.layout.nb_channels)
        per = 1 if fmt[1] else fmt[2]   # values per sample in a row: packed formats interleave the channels
        n = a.shape[1] // per
        if skip is None:
            t = frame.time
            skip = max(0, int(round((offset_s - t) * sr_in))) if t is not None and offset_s else 0
        if skip:
            cut = min(skip, n)
            a, n, skip = a[:, cut * per:], n - cut, skip - cut
        if not runs or runs[-1][0] != fmt:
            runs.append((fmt, []))
        runs[-1][1].append(a)
        have += n
        if want is not None and have >= want:
            break
    parts = [_to_mono(np.concatenate(arrays, axis=1), *fmt) for fmt, arrays in runs]
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return y if want is None else y[:want]


def _av_source(path: PathLike):
    """A path FFmpeg can open, or an open file when the name is not valid UTF-8."""
    name = os.fsdecode(path)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return open(path, "rb")  # closed by the container


def _av_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _to_mono(a: np.ndarray, name: str, planar: bool, n_ch: int) -> np.ndarray:
    """Mono float32 from PyAV's ``to_ndarray`` of frames in sample format ``name``: (channels, n) or (1, n x channels)."""
    if not planar:
        a = a.reshape(-1, n_ch).T
    if a.dtype.kind in "iu":
        # s16/s32 (e.g. ALAC, PCM in MP4): scale to [-1, 1); u8 is offset binary.
        bits = a.dtype.itemsize * 8
        a = a.astype(np.float32)
        if name.startswith("u8"):
            a -= 128.0
        a /= 2.0 ** (bits - 1)
    if a.shape[0] == 1:
        return a[0].astype(np.float32, copy=False)
    return np.full(a.shape[0], 1.0 / a.shape[0], dtype=np.float32) @ a


def _mono(y: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array."""
    # A mat-vec product: ten times faster than y.mean(axis=1) on interleaved frames.
    if y.shape[1] == 1:
        return np.ascontiguousarray(y[:, 0])
    return y @ np.full(y.shape[1], 1.0 / y.shape[1], dtype=np.float32)


def _resample(y: np.ndarray, sr_in: int, sr: int) -> np.ndarray:
    if not np.isfinite(y).all():
        # Corrupt float PCM: a NaN would poison every later FFT.
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    if sr_in != sr:
        # soxr HQ costs ~0.02 CPU-s per 2 minutes at 44.1k -> 22.05k, a tenth of decoding.
        y = soxr.resample(y, sr_in, sr, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def _short(exc: BaseException, limit: int = 200) -> str:
    msg = str(exc).strip() or type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
