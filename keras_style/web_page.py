"""Builds the static in-browser page: bundled styles as fixed-size float16 .tflite models.

The folder `build_web_page` writes stylizes photos entirely in the browser:

* `index.html`, `page.js`, `common.js`, `style.css`: the page, the same look
  and controls as `keras-style serve` (its stylesheet and helpers are shared);
* `models/<style>_<size>.tflite`: fixed-size float16 models made by the
  package's own exporter (`keras_style.export.tflite.export_tflite`: builtin
  operators only, checked against the GPU delegate's operator list), plus
  `models.json`, the list the page reads;
* `litert/`: the LiteRT.js runtime (`@litertjs/core` and its
  `@litertjs/wasm-utils`), taken from npm when the page is built (or from a
  folder), never from a CDN when the page loads.

LiteRT.js runs on WebGPU or on WebAssembly; a model with fixed input
dimensions is what both run best (the GPU delegate needs them), so the page
resizes each photo to the model's square input and draws the result back at
the photo's proportions.
"""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from keras_style.fast import styles as styles_lib

#: The page's own files (HTML and script) in the package.
PAGE_DIR = Path(__file__).parent / "assets" / "web_page"
#: Files shared with the served page.
SHARED_DIR = Path(__file__).parent / "serve" / "static"
#: The LiteRT.js release the page is written against.
LITERTJS_VERSION = "2.5.3"
#: File that marks a folder as a built page (overwriting anything else is refused).
MANIFEST = "models.json"
#: Largest total size of the page's own code (HTML, JS, CSS; no runtime or models).
MAX_PAGE_CODE_BYTES = 100 * 1024

_PAGE_FILES = [(PAGE_DIR, "index.html"), (PAGE_DIR, "page.js")]
_SHARED_FILES = [(SHARED_DIR, "common.js"), (SHARED_DIR, "style.css")]
_RUNTIME_FILES = ("core/package.json", "core/dist/index.js", "wasm-utils/dist/index.js")


def page_code_bytes(folder):
    """Bytes of a built page's own code (HTML, JS, CSS), without runtime, models, images."""
    return sum((Path(folder) / name).stat().st_size for _, name in _PAGE_FILES + _SHARED_FILES)


def find_runtime(folder):
    """The `@litertjs` folder (holding `core/` and `wasm-utils/`) inside `folder`.

    Accepts the folder itself, `folder/@litertjs` or `folder/node_modules/@litertjs`
    (what `npm install @litertjs/core` leaves).

    Raises:
        ValueError: if none of them holds both packages.
    """
    folder = Path(folder)
    for candidate in (folder, folder / "@litertjs", folder / "node_modules" / "@litertjs"):
        if all((candidate / f).is_file() for f in _RUNTIME_FILES):
            return candidate
    raise ValueError(
        f"{folder} holds no LiteRT.js runtime: expected @litertjs/core and @litertjs/wasm-utils "
        "(e.g. the node_modules folder of `npm install @litertjs/core`)"
    )


def fetch_runtime(dest, npm="npm", version=LITERTJS_VERSION):
    """Installs `@litertjs/core` (and its dependency) with npm into `dest`; returns the folder.

    Raises:
        ValueError: if npm is missing or the install fails.
    """
    if shutil.which(npm) is None:
        raise ValueError(
            f"{npm} not found: install Node.js/npm, or pass a folder holding @litertjs/core"
        )
    command = [npm, "install", "--prefix", str(dest), "--no-save", "--no-audit", "--no-fund"]
    result = subprocess.run(
        [*command, f"@litertjs/core@{version}"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ValueError(f"npm could not install @litertjs/core@{version}: {' '.join(tail)}")
    return find_runtime(dest)


def _copy_runtime(source, dest):
    for package, parts in (("core", ("dist", "wasm")), ("wasm-utils", ("dist",))):
        for part in parts:
            shutil.copytree(
                source / package / part,
                dest / package / part,
                ignore=shutil.ignore_patterns("*.map", "*.d.ts", "metafile*.json"),
            )
        for name in ("package.json", "LICENSE", "README.md"):
            if (source / package / name).is_file():
                shutil.copy2(source / package / name, dest / package / name)


def _check_args(style_names, sizes):
    available = styles_lib.list_styles()
    if not style_names:
        raise ValueError("name at least one style")
    unknown = [s for s in style_names if s not in available]
    if unknown:
        raise ValueError(f"Unknown styles {unknown}; available: {', '.join(available)}")
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 32 or sizes[-1] > 2048 or any(s % 4 for s in sizes):
        raise ValueError(f"sizes must be multiples of 4 in [32, 2048], got {sizes}")
    return list(style_names), sizes


def _check_out(out_dir):
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ValueError(f"{out} exists and is not a built page; choose a new or empty folder")
    return out


def _export_models(style_names, sizes, models_dir, log):
    """Fixed-size float16 models of each style; returns the manifest's style entries."""
    from keras_style.export import tflite as export

    entries = []
    for name in style_names:
        log(f"exporting {name} at {sizes}")
        with tempfile.TemporaryDirectory(prefix="keras_style_web_") as tmp:
            report = export.export_tflite(
                name,
                Path(tmp) / "tflite",
                quantizations=["float16"],
                sizes=sizes,
                num_test_photos=0,
                threads=(1,),
                runs=1,
                log=log,
            )
            models = {}
            for variant in report["variants"]:
                if variant.get("fixed_size"):
                    file = f"{name}_{variant['fixed_size']}.tflite"
                    shutil.copy2(Path(tmp) / "tflite" / variant["file"], models_dir / file)
                    models[str(variant["fixed_size"])] = f"models/{file}"
        painting = styles_lib.style_card(name).get("painting", {})
        thumb = SHARED_DIR / "thumbs" / f"{name}.jpg"
        entries.append(
            {
                "name": name,
                "title": painting.get("title", name),
                "artist": painting.get("artist", ""),
                "year": str(painting.get("year", "")),
                "thumbnail": f"thumbs/{thumb.name}" if thumb.is_file() else None,
                "models": models,
            }
        )
    return entries


def build_web_page(out_dir, style_names=None, sizes=(256, 512), runtime_dir=None, log=None):
    """Writes the static in-browser page to `out_dir` (staged, then renamed into place).

    Args:
        out_dir: folder to create (or a previous build to replace).
        style_names: bundled styles to include (default: all of them).
        sizes: square input sides of the models (one model per style and size;
            the page offers them as output sizes).
        runtime_dir: a folder holding `@litertjs/core` and `@litertjs/wasm-utils`
            (see `find_runtime`); None fetches them with npm.
        log: optional callable taking progress messages.

    Returns:
        The manifest dict written to `models.json`.

    Raises:
        ValueError: on unknown styles, bad sizes, an occupied `out_dir` or a
            missing runtime.
        keras_style.export.ops.ExportError: if a model fails the exporter's checks.
    """
    log = log or (lambda message: None)
    style_names, sizes = _check_args(style_names or styles_lib.list_styles(), sizes)
    out = _check_out(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as staging:
        stage = Path(staging) / "page"
        (stage / "models").mkdir(parents=True)
        if runtime_dir is None:
            log(f"fetching @litertjs/core@{LITERTJS_VERSION} with npm")
            runtime = fetch_runtime(Path(staging) / "npm")
        else:
            runtime = find_runtime(runtime_dir)
        _copy_runtime(runtime, stage / "litert")
        for folder, name in _PAGE_FILES + _SHARED_FILES:
            shutil.copy2(folder / name, stage / name)
        shutil.copytree(SHARED_DIR / "thumbs", stage / "thumbs")
        manifest = {
            "sizes": sizes,
            "styles": _export_models(style_names, sizes, stage / "models", log),
            "runtime": json.loads((runtime / "core" / "package.json").read_text())["version"],
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    return manifest
