"""`keras-style serve`: a local web page and HTTP API for the package's stylizers.

Needs the `serve` extra (`pip install "keras-style[serve]"`): Starlette for
the app, uvicorn to run it. `keras_style.serve.app` has the routes and the API,
`jobs` the bounded work queues, `models` the shared networks; the page's
files are in `static/` (no build step, nothing from a CDN).
"""
