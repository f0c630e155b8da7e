#!/usr/bin/env bash
# Sets up a fresh Debian machine for avatarrender: system packages, a virtualenv in .venv with
# Pillow-SIMD built from source, the package itself, and (with --test) what the tests need:
# espeak-ng, Debian's chromium and nginx, Playwright, dask.distributed. hls.js is vendored in the repo
# (avatarrender/playout/web/vendor/, with its licence), so no npm is needed.
# Idempotent: a second run only checks.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
venv=${AVATARRENDER_VENV:-$here/.venv}
py=${PYTHON:-python3}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

apt_pkgs=(espeak-ng libespeak-ng1 libjpeg-dev zlib1g-dev libfreetype-dev libpng-dev)
[ $want_test = 1 ] && apt_pkgs+=(chromium nginx libnginx-mod-rtmp)  # nginx: the LL-HLS test behind examples/nginx.conf; nginx-rtmp: the --push test's ingest
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
if ! "$venv/bin/python" -c 'import importlib.metadata as m; m.distribution("pillow-simd")' 2>/dev/null; then
  cc_flags="cc"
  grep -qw avx2 /proc/cpuinfo && cc_flags="cc -mavx2"
  log "building Pillow-SIMD with CC='$cc_flags' (about a minute)"
  CC="$cc_flags" "${pip[@]}" --no-binary pillow-simd "pillow-simd==12.1.1.post0"
fi
extras="."
[ $want_test = 1 ] && extras=".[test]"
log "installing avatarrender ($extras)"
"${pip[@]}" -c scripts/constraints.txt -e "$extras"
"$venv/bin/python" -m avatarrender.doctor --pil

log "ready: $venv/bin/avatarrender"
