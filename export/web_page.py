"""Builds the static in-browser page (LiteRT.js, fixed-size float16 models of bundled styles).

    python -m export.web_page --out web --styles great_wave,udnie --sizes 256,512
    python -m http.server --directory web 8080   # then open http://127.0.0.1:8080/

The LiteRT.js runtime comes from npm (`@litertjs/core`) at build time, or from
`--litertjs_dir` (a folder holding @litertjs/core and @litertjs/wasm-utils,
e.g. a node_modules folder). The folder deploys to any static host.
"""

from absl import app, flags

from export._common import log, run_cleanly

_OUT = flags.DEFINE_string(
    "out", None, "Output folder (new, empty or a previous build).", required=True
)
_STYLES = flags.DEFINE_list("styles", None, "Bundled styles to include (default: all).")
_SIZES = flags.DEFINE_list("sizes", ["256", "512"], "Square model sizes (the page's output sizes).")
_RUNTIME = flags.DEFINE_string(
    "litertjs_dir", None, "Folder holding @litertjs/core and @litertjs/wasm-utils (default: npm)."
)


def main(argv):
    del argv

    def run():
        from keras_style import web_page

        try:
            sizes = [int(s) for s in _SIZES.value]
        except ValueError:
            raise ValueError(f"--sizes takes integers; got {','.join(_SIZES.value)}") from None
        manifest = web_page.build_web_page(
            _OUT.value, _STYLES.value, sizes, runtime_dir=_RUNTIME.value, log=log
        )
        names = ", ".join(s["name"] for s in manifest["styles"])
        code = web_page.page_code_bytes(_OUT.value) / 1024
        print(
            f"Page written to {_OUT.value}: {names} at {manifest['sizes']} px, "
            f"page code {code:.1f} KB"
        )
        print(f"Serve it with: python -m http.server --directory {_OUT.value} 8080")

    run_cleanly(run, quiet_native_logs=True)  # without TensorFlow's C++ start-up lines


if __name__ == "__main__":
    app.run(main)
