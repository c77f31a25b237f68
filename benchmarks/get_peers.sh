#!/usr/bin/env bash
# Make two virtual environments with the peer estimators that benchmarks/peer_keys.py and peer_tempo.py run:
#   DIR/essentia  Essentia (KeyExtractor, RhythmExtractor2013) with PyAV for the codecs its FFmpeg lacks,
#                 on a current numpy;
#   DIR/madmom    madmom 0.16.1 (CNN key model, RNN + DBN beat tracker), which needs numpy < 1.24 and
#                 builds with Cython.
# Neither is a dependency of crate_dask; they are only used to label real recordings for accuracy.py.
#
# Usage: benchmarks/get_peers.sh DIR
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
DIR=$1
PY=${PYTHON:-python3}
mkdir -p "$DIR"
"$PY" -m venv --without-pip "$DIR/essentia"
"$PY" -m pip --python "$DIR/essentia/bin/python" install -q essentia av numpy
"$PY" -m venv --without-pip "$DIR/madmom"
"$PY" -m pip --python "$DIR/madmom/bin/python" install -q 'numpy<1.24' 'scipy<1.12' cython mido 'setuptools<70' wheel pytest-runner  # madmom imports pkg_resources; its setup_requires names pytest-runner
"$PY" -m pip --python "$DIR/madmom/bin/python" install -q --no-build-isolation madmom==0.16.1
"$DIR/essentia/bin/python" -c "import essentia.standard" && echo "essentia: $DIR/essentia/bin/python"
"$DIR/madmom/bin/python" -c "import collections, collections.abc
for n in ('MutableSequence', 'Sequence', 'Iterable', 'Mapping', 'MutableMapping', 'Callable'):
    setattr(collections, n, getattr(collections.abc, n))
import madmom.features.key" && echo "madmom: $DIR/madmom/bin/python"
