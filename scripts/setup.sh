#!/usr/bin/env bash
# Sets up a fresh Debian machine for avatarrender: system packages, a virtualenv in .venv with
# Pillow-SIMD built from source, the package itself, and (with --test) what the tests need:
# espeak-ng, flite, Festival, Piper, Kokoro, Debian's chromium and nginx, Playwright, dask.distributed. hls.js is vendored in
# the repo (avatarrender/playout/web/vendor/, with its licence), so no npm is needed.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
venv=${AVATARRENDER_VENV:-$here/.venv}
py=${PYTHON:-python3}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# libraqm-dev: Pillow's text layout that shapes Arabic and orders right-to-left captions (it must
# be there when Pillow-SIMD is built). Fonts the captions fall back to, the smallest set found that
# covers Chinese and Japanese (Droid Sans Fallback, 7 MB), Arabic and Hebrew (DejaVu Sans) and
# emoji (Symbola, 3 MB); Noto CJK alone is 91 MB. Korean is not covered (fonts-nanum, 33 MB).
apt_pkgs=(espeak-ng libespeak-ng1 libjpeg-dev zlib1g-dev libfreetype-dev libpng-dev libraqm-dev
          fonts-dejavu-core fonts-droid-fallback fonts-symbola)
# flite and Festival: two more speech synthesizer families (voices from recordings of real
# speakers) with phone timings, for the lip-sync tests, training (python -m
# avatarrender.evaluation.train) and benchmark; nginx: the LL-HLS test behind examples/nginx.conf;
# nginx-rtmp: the --push test's ingest; alsa-utils: its test recordings (/usr/share/sounds/alsa)
# are a real speaker's voice, for the lip-sync tests
[ $want_test = 1 ] && apt_pkgs+=(chromium flite festival festvox-kallpc16k festvox-kdlpc16k
                                 festvox-us-slt-hts nginx libnginx-mod-rtmp alsa-utils)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
pip=("$venv/bin/pip" install -q --disable-pip-version-check)

# Pillow-SIMD first, built from source (AVX2 when the CPU has it). Stock pillow installs the same PIL/
# folder under another name: the constraint below makes any dependency that asks for it fail loudly.
# Built again when an older build lacks raqm (libraqm-dev was missing then); --no-cache-dir, or pip
# would reinstall the wheel it built without raqm.
if ! "$venv/bin/python" -c 'import importlib.metadata as m; m.distribution("pillow-simd")
from PIL import features; assert features.check("raqm")' 2>/dev/null; then
  cc_flags="cc"
  grep -qw avx2 /proc/cpuinfo && cc_flags="cc -mavx2"
  log "building Pillow-SIMD with CC='$cc_flags' (about a minute)"
  CC="$cc_flags" "${pip[@]}" --no-cache-dir --force-reinstall --no-deps --no-binary pillow-simd \
    "pillow-simd==12.1.1.post0"
fi
extras="."
[ $want_test = 1 ] && extras=".[test]"
log "installing avatarrender ($extras)"
"${pip[@]}" -c scripts/constraints.txt -e "$extras"
# An editable install compiles none of the project's modules: each command (and each render
# worker) compiled about 40 of them from source, 0.1 s of CPU apiece, wherever the bytecode
# cannot be written back (PYTHONDONTWRITEBYTECODE, a read-only checkout). cli/ is compiled
# where avatarrender/_cli imports it from (the link: compileall does not follow it).
"$venv/bin/python" -m compileall -q -j 0 avatarrender cli >/dev/null \
  || log "could not compile every module ahead (commands start a little slower)"
"$venv/bin/python" -m avatarrender.doctor --pil

log "ready: $venv/bin/avatarrender"
