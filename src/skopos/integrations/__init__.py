"""Ready-made endpoints for web frameworks; each module imports its framework lazily.

- ``skopos.integrations.wsgi``: WSGI middleware/app (any WSGI framework)
- ``skopos.integrations.asgi``: ASGI middleware/app (any ASGI framework)
- ``skopos.integrations.flask``, ``.django``, ``.starlette`` (also FastAPI)

They all share ``skopos.integrations.endpoint``: what the event endpoint accepts
and answers, and how the client script is served.
"""
