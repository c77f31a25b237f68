#!/usr/bin/env bash
# Collect real, freely licensed full-length music for benchmarking crate_dask.
#
# Usage: benchmarks/get_real_music.sh OUTDIR [PACKAGE...]
#
# Downloads the Debian packages warzone2100-music (Opus/OGG) and nexuiz-music
# (OGG Vorbis), or the PACKAGEs named (wesnoth-1.16-music: 32 orchestral and
# folk pieces, a second set of another kind; marsshooter-data openclonk-data
# hedgewars-data: metal with vocals, rock, house, reggae and other themed game
# music, a third) with `apt-get download` (no installation, no root needed beyond
# apt's cache), extracts them with `dpkg-deb -x`, copies every full-length track
# into OUTDIR and transcodes a few of them to MP3 (soundfile) and M4A/AAC (PyAV)
# so that a benchmark sees the codec mix of a real DJ library. No system ffmpeg
# is needed: PyAV bundles FFmpeg.
#
# The music is GPL-2+/CC licensed game soundtrack; it has no BPM/key ground
# truth, it is for speed and robustness measurements only.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 OUTDIR [PACKAGE...]" >&2
    exit 2
fi
OUT=$1
shift
PACKAGES=("${@:-warzone2100-music}")
[ $# -gt 0 ] || PACKAGES+=(nexuiz-music)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
# shellcheck source=benchmarks/debs.sh
. "$(dirname "$0")/debs.sh"
unpack_debs "$WORK" "${PACKAGES[@]}"

# Full-length tracks only: the packages also hold short jingles/stingers.
# Nexuiz keeps its music in a zip archive (music.pk3): unpack it first.
"$PY" - "$WORK/root" "$OUT" <<'PYEOF'
import shutil
import sys
import zipfile
from pathlib import Path

import soundfile as sf

src, out = Path(sys.argv[1]), Path(sys.argv[2])
for pk3 in list(src.rglob("*.pk3")):
    with zipfile.ZipFile(pk3) as z:
        z.extractall(pk3.with_suffix(".d"))
min_s = 60.0
kept = []
for p in sorted(src.rglob("*")):
    if p.suffix.lower() not in (".ogg", ".opus") or not p.is_file():
        continue
    try:
        info = sf.info(str(p))
    except Exception as exc:  # not decodable by libsndfile: skip, say why
        print(f"skip {p.name}: {exc}", file=sys.stderr)
        continue
    if info.duration < min_s:
        continue
    # Named for the game it came from (the packages unpack into one tree).
    games = ("warzone2100", "wesnoth", "nexuiz", "marsshooter", "openclonk", "hedgewars")
    pkg = next((g for g in games if g in str(p)), "music")
    # The same file name in another folder would overwrite a track: name it for its folders too.
    parts = p.relative_to(src).parts
    dest = next(d for d in (out / "-".join((pkg, *parts[-k:])) for k in range(1, len(parts) + 1))
                if d not in kept)
    shutil.copyfile(p, dest)
    kept.append(dest)
print(f"copied {len(kept)} full-length tracks into {out}")
PYEOF

# Codec mix: every 4th track also as MP3 (libsndfile/LAME) and every 4th
# (offset by 2) as M4A/AAC (PyAV); the originals stay OGG/Opus.
"$PY" - "$OUT" <<'PYEOF'
import sys
from pathlib import Path

import av
import numpy as np
import soundfile as sf

out = Path(sys.argv[1])
tracks = sorted(p for p in out.iterdir() if p.suffix in (".ogg", ".opus"))


def to_mp3(src: Path) -> Path:
    y, sr = sf.read(str(src), dtype="float32", always_2d=True)
    dest = src.with_suffix(".mp3")
    # Written in blocks: one huge write crashes some libsndfile encoders.
    with sf.SoundFile(str(dest), "w", sr, y.shape[1], format="MP3") as f:
        for i in range(0, len(y), 65536):
            f.write(y[i:i + 65536])
    return dest


def to_m4a(src: Path) -> Path:
    y, sr = sf.read(str(src), dtype="float32", always_2d=True)
    y = y[:, :2]
    dest = src.with_suffix(".m4a")
    layout = "stereo" if y.shape[1] == 2 else "mono"
    with av.open(str(dest), "w", format="mp4") as c:
        st = c.add_stream("aac", rate=sr, layout=layout)
        st.bit_rate = 192_000
        step = 1024 * 64
        for i in range(0, len(y), step):
            chunk = np.ascontiguousarray(y[i:i + step].T)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            for pkt in st.encode(frame):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)
    return dest


n = 0
for i, p in enumerate(tracks):
    if i % 4 == 0:
        to_mp3(p); p.unlink(); n += 1
    elif i % 4 == 2:
        to_m4a(p); p.unlink(); n += 1
print(f"transcoded {n} of {len(tracks)} tracks (MP3/M4A); the rest stay OGG/Opus")
PYEOF
ls "$OUT" | sed 's/.*\.//' | sort | uniq -c
