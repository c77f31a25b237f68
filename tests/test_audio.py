"""Tests of crate_dask.library.audio: real files of every common format, written in tmp_path."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import soundfile as sf
from mutagen.id3 import ID3, TIT2, TPE1

from crate_dask.errors import DecodeError
from crate_dask.library.audio import Excerpt, load_excerpt

SR_IN = 44100


def _tone(duration_s: float, *, freq: float = 440.0, sr: int = SR_IN, channels: int = 2) -> np.ndarray:
    t = np.arange(int(duration_s * sr)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.repeat(y[:, None], channels, axis=1)


def _ramp_tone(duration_s: float, sr: int = SR_IN) -> np.ndarray:
    """A tone whose amplitude encodes the time (0.1 at 0 s to 0.9 at the end): shows where an excerpt came from."""
    t = np.arange(int(duration_s * sr)) / sr
    amp = 0.1 + 0.8 * t / duration_s
    y = (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.stack([y, y], axis=1)


def _write(path, y: np.ndarray, sr: int = SR_IN, fmt: str | None = None) -> str:
    # Block writes: one huge write crashes libsndfile's Vorbis encoder.
    with sf.SoundFile(str(path), "w", sr, y.shape[1], format=fmt) as f:
        for i in range(0, len(y), 65536):
            f.write(y[i:i + 65536])
    return str(path)


def _write_m4a(path, y: np.ndarray, sr: int = SR_IN) -> str:
    with av.open(str(path), "w", format="mp4") as c:
        st = c.add_stream("aac", rate=sr, layout="stereo")
        for i in range(0, len(y), 65536):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[i:i + 65536].T), format="fltp",
                                               layout="stereo")
            frame.sample_rate = sr
            for pkt in st.encode(frame):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    return str(path)


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


def _amplitude(y: np.ndarray) -> float:
    return float(np.sqrt(2 * np.mean(y.astype(np.float64) ** 2)))


FORMATS = ["wav", "flac", "ogg", "mp3", "m4a"]


@pytest.fixture(scope="module")
def ramp_files(tmp_path_factory) -> dict[str, str]:
    """The same 12 s ramp tone in every format."""
    d = tmp_path_factory.mktemp("ramp")
    y = _ramp_tone(12.0)
    files = {ext: _write(d / f"ramp.{ext}", y) for ext in ("wav", "flac", "ogg", "mp3")}
    files["m4a"] = _write_m4a(d / "ramp.m4a", y)
    return files


@pytest.mark.parametrize("ext", FORMATS)
def test_excerpt_comes_from_the_middle(ramp_files, ext):
    ex = load_excerpt(ramp_files[ext], sr=22050, excerpt_s=4.0)
    assert isinstance(ex, Excerpt)
    assert ex.y.dtype == np.float32 and ex.y.ndim == 1 and ex.sr == 22050
    assert ex.track_duration_s == pytest.approx(12.0, abs=0.1)
    assert ex.offset_s == pytest.approx(4.0, abs=0.1)
    assert ex.duration_s == pytest.approx(4.0, abs=0.01)
    # The ramp's amplitude at 4..8 s is 0.37..0.63: the window really is the middle.
    assert _amplitude(ex.y) == pytest.approx(0.5, abs=0.03)
    assert _peak_hz(ex.y, ex.sr) == pytest.approx(220.0, abs=1.0)


@pytest.mark.parametrize("ext", FORMATS)
def test_key_windows_are_spread_evenly_over_the_track(ramp_files, ext):
    ex = load_excerpt(ramp_files[ext], sr=22050, excerpt_s=4.0, key_window_s=1.0, key_windows=4)
    assert ex.offset_s == pytest.approx(4.0, abs=0.1) and ex.duration_s == pytest.approx(4.0, abs=0.01)
    assert _amplitude(ex.y) == pytest.approx(0.5, abs=0.03)        # the excerpt is the same as without them
    assert [round(len(w) / ex.sr, 2) for w in ex.key_windows] == [1.0] * 4
    # Centred at 1/8, 3/8, 5/8 and 7/8 of the 12 s ramp (1.5, 4.5, 7.5, 10.5 s): amplitudes 0.2, 0.4, 0.6, 0.8
    # (libsndfile's MP3 decoder starts with ~0.1 s of zeros after a seek, hence the tolerance).
    assert [_amplitude(w) for w in ex.key_windows] == pytest.approx([0.2, 0.4, 0.6, 0.8], abs=0.05)
    # The two inside the excerpt (4..8 s) are cut from it, not decoded again.
    assert all(np.shares_memory(w, ex.y) for w in ex.key_windows[1:3])
    assert not any(np.shares_memory(w, ex.y) for w in ex.key_windows[::3])
    assert load_excerpt(ramp_files[ext], excerpt_s=None, key_window_s=1.0).key_windows == ()  # whole track
    assert load_excerpt(ramp_files[ext], excerpt_s=4.0).key_windows == ()                      # not asked for


@pytest.mark.parametrize("ext", ["wav", "ogg", "mp3", "m4a"])
def test_a_longer_track_gets_one_key_window_per_spacing_up_to_twice_the_count(ramp_files, ext):
    def amplitudes(spacing_s: float) -> list[float]:
        ex = load_excerpt(ramp_files[ext], sr=22050, excerpt_s=4.0, key_window_s=1.0, key_windows=2,
                          key_window_spacing_s=spacing_s)
        return [_amplitude(w) for w in ex.key_windows]

    # The 12 s ramp (amplitude 0.1 + 0.8 t / 12): one window per 4 s is 3 windows, centred at 2, 6 and 10 s.
    assert amplitudes(4.0) == pytest.approx([0.233, 0.5, 0.767], abs=0.05)
    # One per 6 s is 2, the count itself (at 3 and 9 s); one per 2 s would be 6, capped at twice the count.
    assert amplitudes(6.0) == pytest.approx([0.3, 0.7], abs=0.05)
    assert amplitudes(2.0) == pytest.approx([0.2, 0.4, 0.6, 0.8], abs=0.05)
    with pytest.raises(ValueError, match="key_window_spacing_s"):
        load_excerpt(ramp_files[ext], excerpt_s=4.0, key_window_s=1.0, key_window_spacing_s=0.0)


@pytest.mark.parametrize("ext", FORMATS)
def test_whole_track(ramp_files, ext):
    ex = load_excerpt(ramp_files[ext], sr=11025, excerpt_s=None)
    assert ex.offset_s == 0.0
    assert ex.duration_s == pytest.approx(12.0, abs=0.1)
    first, last = ex.y[: ex.sr], ex.y[-2 * ex.sr: -ex.sr]
    assert _amplitude(first) < 0.2 < 0.8 < _amplitude(last)


def test_opus(tmp_path):
    with sf.SoundFile(str(tmp_path / "a.opus"), "w", 48000, 2, format="OGG", subtype="OPUS") as f:
        f.write(_tone(6.0, sr=48000))
    ex = load_excerpt(tmp_path / "a.opus", sr=22050, excerpt_s=2.0)
    assert ex.offset_s == pytest.approx(2.0, abs=0.05) and ex.duration_s == pytest.approx(2.0, abs=0.01)
    assert _peak_hz(ex.y, ex.sr) == pytest.approx(440.0, abs=1.0)


def test_short_track_is_decoded_whole(tmp_path):
    p = _write(tmp_path / "short.flac", _tone(3.0))
    ex = load_excerpt(p, sr=22050, excerpt_s=120.0)
    assert ex.offset_s == 0.0 and ex.duration_s == pytest.approx(3.0, abs=0.01)


@pytest.mark.parametrize("sr_in,sr", [(44100, 22050), (48000, 22050), (22050, 22050), (96000, 16000)])
def test_resampling_keeps_the_pitch(tmp_path, sr_in, sr):
    p = _write(tmp_path / "a440.wav", _tone(2.0, sr=sr_in), sr=sr_in)
    ex = load_excerpt(p, sr=sr, excerpt_s=None)
    assert ex.sr == sr and len(ex.y) == pytest.approx(2 * sr, abs=2)
    assert _peak_hz(ex.y, sr) == pytest.approx(440.0, abs=1.0)
    assert _amplitude(ex.y[sr // 4: -sr // 4]) == pytest.approx(0.5, rel=0.02)


def test_channels_are_averaged(tmp_path):
    y = _tone(2.0)
    y[:, 1] = 0.0
    ex = load_excerpt(_write(tmp_path / "left.wav", y), excerpt_s=None)
    assert _amplitude(ex.y[1000:-1000]) == pytest.approx(0.25, rel=0.02)


def test_odd_file_name_and_bytes_path(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/caf\xe9 \xff.flac"   # not valid UTF-8
    with open(name, "wb") as fh:
        sf.write(fh, _tone(1.0), SR_IN, format="FLAC")
    assert load_excerpt(name, excerpt_s=None).duration_s == pytest.approx(1.0, abs=0.01)


def test_extension_is_not_trusted(tmp_path):
    """A FLAC named .mp3 and an M4A named .wav still decode: the content decides."""
    flac_as_mp3 = tmp_path / "really_flac.mp3"
    with open(flac_as_mp3, "wb") as fh:
        sf.write(fh, _tone(1.0), SR_IN, format="FLAC")
    m4a_as_wav = _write_m4a(tmp_path / "really_m4a.m4a", _tone(1.0))
    os.rename(m4a_as_wav, tmp_path / "really_m4a.wav")
    for p in (flac_as_mp3, tmp_path / "really_m4a.wav"):
        assert load_excerpt(p, excerpt_s=None).duration_s == pytest.approx(1.0, abs=0.05)


# -- failures: every one is a DecodeError with a message -----------------------------------------

def _bad(tmp_path, name: str, content: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(content)
    return str(p)


@pytest.mark.parametrize("name,content,words", [
    ("empty.mp3", b"", "empty"),
    ("text.mp3", b"This is not music at all, just some notes.\n" * 50, "decode"),
    ("zeros.flac", b"\0" * 5000, "decode"),
    ("random.ogg", np.random.default_rng(1).bytes(20000), "decode"),
])
def test_not_audio_raises_decode_error(tmp_path, name, content, words):
    with pytest.raises(DecodeError, match=words):
        load_excerpt(_bad(tmp_path, name, content))


def test_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(DecodeError, match="not found"):
        load_excerpt(tmp_path / "nope.wav")


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_header_only_file_raises_decode_error(tmp_path, ext):
    whole = _write(tmp_path / f"whole.{ext}", _tone(5.0), fmt=None)
    data = open(whole, "rb").read()
    with pytest.raises(DecodeError):
        load_excerpt(_bad(tmp_path, f"cut.{ext}", data[:60]))


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "m4a"])
def test_truncated_file_raises_decode_error(tmp_path, ext):
    """A file that stops long before its header says it should is damaged, not a short track."""
    y = _tone(12.0)
    whole = _write_m4a(tmp_path / "w.m4a", y) if ext == "m4a" else _write(tmp_path / f"w.{ext}", y)
    data = open(whole, "rb").read()
    cut = _bad(tmp_path, f"cut.{ext}", data[: len(data) // 5])
    with pytest.raises(DecodeError):
        load_excerpt(cut, excerpt_s=4.0)


def test_corrupt_mp3_after_valid_tags(tmp_path):
    p = tmp_path / "tagged_garbage.mp3"
    p.write_bytes(b"")
    tags = ID3()
    tags.add(TIT2(encoding=3, text="A title"))
    tags.add(TPE1(encoding=3, text="An artist"))
    tags.save(str(p))
    with open(p, "ab") as fh:
        fh.write(np.random.default_rng(7).bytes(300_000))
    assert ID3(str(p))["TIT2"].text == ["A title"]     # the tags are fine
    with pytest.raises(DecodeError):
        load_excerpt(p)


def test_tags_only_mp3(tmp_path):
    p = tmp_path / "tags_only.mp3"
    p.write_bytes(b"")
    tags = ID3()
    tags.add(TIT2(encoding=3, text="Nothing else"))
    tags.save(str(p))
    with pytest.raises(DecodeError):
        load_excerpt(p)


def test_invalid_parameters():
    with pytest.raises(ValueError):
        load_excerpt("x.wav", sr=0)
    with pytest.raises(ValueError):
        load_excerpt("x.wav", excerpt_s=-1.0)
