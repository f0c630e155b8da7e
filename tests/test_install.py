"""The installation itself: PIL is Pillow-SIMD, stock pillow is refused, the bundled ffmpeg works."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import importlib.metadata as md

from avatarrender.doctor import check_pillow_simd
from avatarrender.media import ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent


def test_pil_is_pillow_simd():
    version = check_pillow_simd()
    import PIL

    assert PIL.__version__ == version == md.version("pillow-simd")
    try:
        md.distribution("pillow")
        raise AssertionError("stock pillow is installed beside Pillow-SIMD")
    except md.PackageNotFoundError:
        pass


def _fake_pillow_wheel(folder: Path) -> None:
    import zipfile

    name = "pillow-99.0.dist-info"
    files = {f"{name}/METADATA": "Metadata-Version: 2.1\nName: pillow\nVersion: 99.0\n",
             f"{name}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{name}/RECORD": ""}
    with zipfile.ZipFile(folder / "pillow-99.0-py3-none-any.whl", "w") as z:
        for k, v in files.items():
            z.writestr(k, v)


def test_constraints_refuse_stock_pillow(tmp_path):
    """The setup installs with scripts/constraints.txt: a requirement on pillow cannot resolve."""
    assert "-c scripts/constraints.txt" in (ROOT / "scripts" / "setup.sh").read_text()
    _fake_pillow_wheel(tmp_path)
    base = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
            "--find-links", str(tmp_path), "pillow"]
    assert subprocess.run(base, capture_output=True, timeout=120).returncode == 0  # installable...
    refused = subprocess.run(base + ["-c", str(ROOT / "scripts" / "constraints.txt")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0  # ...but not under our constraints
    assert "pillow" in refused.stderr.lower()


def test_doctor_command():
    res = subprocess.run([sys.executable, "-m", "avatarrender.doctor"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "Pillow-SIMD" in res.stdout


def test_bundled_ffmpeg_has_what_we_need():
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    assert "libx264" in out and " aac " in out
    mux = subprocess.run([ffmpeg_exe(), "-hide_banner", "-muxers"], capture_output=True, text=True).stdout
    assert " mpegts " in mux and " hls " in mux
