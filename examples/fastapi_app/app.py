"""Skopos in a FastAPI app: the shared demo page, tracked into PocketBase.

Run it (Skopos options from the environment, see README.md)::

    SKOPOS_POCKETBASE_URL=http://127.0.0.1:8090 SKOPOS_SITE_ID=... \\
    SKOPOS_ADMIN_EMAIL=... SKOPOS_ADMIN_PASSWORD=... python examples/fastapi_app/app.py
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from skopos.integrations.starlette import skopos_lifespan, skopos_routes

SHARED = Path(__file__).resolve().parent.parent / "shared"
INDEX = (SHARED / "index.html").read_text(encoding="utf-8")
OUTBOUND = (SHARED / "outbound.html").read_text(encoding="utf-8")

skopos = skopos_lifespan()  # every option from SKOPOS_* environment variables
app = FastAPI(lifespan=skopos, routes=skopos_routes(skopos))  # POST /api/event, GET /skopos.js


@app.get("/", response_class=HTMLResponse)
@app.get("/about", response_class=HTMLResponse)
@app.get("/spa/step-2", response_class=HTMLResponse)
async def page() -> str:
    return INDEX


@app.get("/outbound-target", response_class=HTMLResponse)
async def outbound_target() -> str:
    return OUTBOUND


@app.post("/api/signup", status_code=204)
async def signup(request: Request) -> None:
    # What only the server knows is tracked from the server, in the visitor's session.
    skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
