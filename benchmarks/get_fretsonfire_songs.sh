#!/usr/bin/env bash
# Eight real rock and metal songs with their composers' tempo, as a dataset for accuracy.py.
#
# Usage: benchmarks/get_fretsonfire_songs.sh OUTDIR
#        python benchmarks/accuracy.py OUTDIR --direct
#
# Downloads Debian's fretsonfire-songs-muldjord (death metal, CC BY-SA 3.0) and
# fretsonfire-songs-sectoid (instrumental rock/metal, MIT-style) with `apt-get download`
# (no installation), mixes each song's backing and guitar stems (song.ogg + guitar.ogg, the
# same length) into OUTDIR/audio/*.flac, and writes OUTDIR/annotations.csv with the tempo of
# the song's MIDI chart (notes.mid: one Set Tempo value per song, the tempo the composer
# charted the guitar part at). No key labels. Four of the eight songs are also in
# ../shared/eval/dev-real (source fretsonfire_songs); the other four are not.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUT=$1
PY=${PYTHON:-python3}
mkdir -p "$OUT/audio"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
# shellcheck source=benchmarks/debs.sh
. "$(dirname "$0")/debs.sh"
unpack_debs "$WORK" fretsonfire-songs-muldjord fretsonfire-songs-sectoid

"$PY" - "$WORK/root" "$OUT" <<'PYEOF'
import re
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

src, out = Path(sys.argv[1]), Path(sys.argv[2])
in_dev_real = {"escape_from_chaosland", "feelings", "chaos_god", "internal_degeneration"}
rows = []
for song in sorted(src.rglob("song.ogg")):
    folder = song.parent
    # MIDI Set Tempo meta events: FF 51 03 and microseconds per quarter note.
    tempi = {round(60e6 / int.from_bytes(m.group(1), "big"), 3)
             for m in re.finditer(rb"\xff\x51\x03(...)", (folder / "notes.mid").read_bytes(), re.S)}
    if len(tempi) != 1:
        print(f"skip {folder.name}: tempo changes {sorted(tempi)}", file=sys.stderr)
        continue
    mix, sr = sf.read(str(song), dtype="float32", always_2d=True)
    if (folder / "guitar.ogg").is_file():
        guitar, _ = sf.read(str(folder / "guitar.ogg"), dtype="float32", always_2d=True)
        n = min(len(mix), len(guitar))
        mix = mix[:n] + guitar[:n]
    mix /= max(1.0, float(np.abs(mix).max()))  # the sum of two stems may clip
    name = folder.name.lower().replace(" ", "_")
    dest = f"audio/fretsonfire_songs__{folder.parent.name}_{name}.flac"
    sf.write(str(out / dest), mix, sr)
    source = "fretsonfire_in_dev_real" if name in in_dev_real else "fretsonfire_not_in_dev_real"
    rows.append(f"{dest},{tempi.pop():g},,{source}")
(out / "annotations.csv").write_text("file,bpm,key,source\n" + "\n".join(rows) + "\n")
print(f"wrote {len(rows)} songs and annotations.csv into {out}")
PYEOF
