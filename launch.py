"""Start Optimization Studio (also the Hugging Face Space ``app_file``)."""

from __future__ import annotations

import argparse
import gc

# Start-up makes ~190,000 GC-tracked objects that live as long as the server; collecting them
# as they came took ~15% of the start's CPU (measured): no collection until it is served.
gc.disable()
try:
    from studio.app import build_app, launch_kwargs
    from studio.context import StudioContext

    ctx = StudioContext.from_env()  # STUDIO_ROOT, STUDIO_UPLOAD_LIMIT_MB, ... (README)
    demo = build_app(ctx)
finally:
    if __name__ != "__main__":
        gc.enable()

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None,
                        help="default: $GRADIO_SERVER_PORT or 7860")
    args = parser.parse_args()
    from studio.api import create_app, serve  # REST API at /api, the UI mounted at /

    kw = launch_kwargs(ctx, args.host, args.port)
    app = create_app(ctx, demo)
    gc.collect()  # start-up's garbage, once; later collections skip what is left (gc.freeze)
    gc.freeze()
    gc.enable()
    serve(app, kw["server_name"], kw["server_port"])
