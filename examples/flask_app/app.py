"""Skopos in a Flask app: the shared demo page, tracked into PocketBase.

Run it (Skopos options from the environment, see README.md)::

    SKOPOS_POCKETBASE_URL=http://127.0.0.1:8090 SKOPOS_SITE_ID=... \\
    SKOPOS_ADMIN_EMAIL=... SKOPOS_ADMIN_PASSWORD=... python examples/flask_app/app.py
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, Response, request, send_from_directory

from skopos.integrations.flask import Skopos

SHARED = Path(__file__).resolve().parent.parent / "shared"

app = Flask(__name__)
skopos = Skopos(app)  # POST /api/event, GET /skopos.js; options from SKOPOS_* env


@app.get("/")
@app.get("/about")
@app.get("/spa/step-2")
def page() -> Response:
    return send_from_directory(SHARED, "index.html")


@app.get("/outbound-target")
def outbound_target() -> Response:
    return send_from_directory(SHARED, "outbound.html")


@app.post("/api/signup")
def signup() -> tuple[str, int]:
    # What only the server knows is tracked from the server, in the visitor's session.
    skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})
    return "", 204


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
