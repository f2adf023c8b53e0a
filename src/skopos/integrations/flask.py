"""Skopos for Flask: the event endpoint and the client script as a blueprint.

Example::

    from flask import Flask, request
    from skopos.integrations.flask import Skopos

    app = Flask(__name__)
    app.config["SKOPOS"] = {"site_id": "abc123"}  # merged over SKOPOS_* environment variables
    skopos = Skopos(app)  # POST /api/event, GET /skopos.js, POST /collect, GET /collect/health

    @app.post("/signup")
    def signup() -> str:
        skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})
        return "welcome"

With an app factory: ``skopos = Skopos()`` at module level, ``skopos.init_app(app)`` in the
factory. An SDK you created yourself: ``Skopos(app, sdk=sdk)``.

``app.config["SKOPOS"]`` holds the ``SkoposSDK.init`` options (anything not given there comes
from ``SKOPOS_*`` environment variables) and, optionally, the ``EndpointConfig`` keys
``event_path``, ``script_path``, ``collect_path``, ``max_body_bytes`` and ``cors_origins``;
``Skopos(app, config=EndpointConfig(...))`` replaces those. Unknown keys raise
``ConfigurationError`` in ``init_app``.

**The SDK's lifetime.** The extension starts the SDK on first use (the first event request or
the first ``skopos.sdk``), once per process, and not when the app is created: ``flask
routes`` and other CLI commands never start it, and a ``gunicorn --preload`` master never
starts threads its workers would inherit. Starting takes milliseconds and never waits for
PocketBase: the SDK connects in the background, event requests are answered ``204`` and
their calls wait in its queue meanwhile; PocketBase down, slow or misconfigured is logged
and shown in ``skopos.sdk.stats()``, never an error of yours. Only a bad option (a missing
``site_id``...) stops it: ``skopos.sdk`` raises ``ConfigurationError``, and the event
endpoint logs it once and answers 503. Event requests that arrive while the SDK starts
wait for it and are then tracked in the order they arrived.

At interpreter exit the SDK flushes for up to a second on its own (``atexit``); the
extension makes SIGTERM an exit too where nothing else handles it (the development server,
a bare ``python app.py``: see the README's lifecycle table; ``"handle_sigterm": False``
turns that off). Give it longer with ``skopos.shutdown(timeout)``, e.g. from gunicorn's
``worker_exit`` hook, which runs in the worker process as it stops::

    # gunicorn.conf.py
    def worker_exit(server, worker):
        from myapp import skopos  # the Skopos extension

        skopos.shutdown(timeout=5.0)  # flushes what is queued; starts nothing

Flask-WTF's ``CSRFProtect`` must not guard the endpoint (``sendBeacon`` cannot send a token):
``csrf.exempt(app.blueprints["skopos"])``.
"""

from __future__ import annotations

import logging
from typing import Any

import flask
from flask import Blueprint, Flask, request

from skopos._exceptions import ConfigurationError
from skopos._sdk import SkoposSDK, install_sigterm_handler
from skopos.integrations._lazy import LazySdk
from skopos.integrations._settings import split_settings
from skopos.integrations.endpoint import (
    Accept,
    EndpointConfig,
    Response,
    accept,
    accept_collect,
    collect_health,
    collect_precheck,
    precheck,
    script_response,
    site_hosts,
)

__all__ = ["Skopos"]

logger = logging.getLogger("skopos")


_WANTED_HEADERS = ("content-type", "content-length", "origin", "if-none-match")


def _endpoint_headers() -> dict[str, str]:
    return {name: value for name in _WANTED_HEADERS if (value := request.headers.get(name))}


def _flask_response(response: Response) -> flask.Response:
    answer = flask.Response(response.body, status=response.status, headers=response.headers)
    if not response.body and not any(k.lower() == "content-type" for k, _ in response.headers):
        del answer.headers["Content-Type"]  # Flask's default text/html, on an empty answer
    return answer


class Skopos:
    """The Flask extension: a ``skopos`` blueprint with the event endpoints and the script.

    ``sdk``: an SDK you started yourself (else one is started on first use, from
    ``app.config["SKOPOS"]`` and ``SKOPOS_*``); ``config``: the endpoint's paths, body
    limit and CORS origins (else from ``app.config["SKOPOS"]``).

    Example::

        skopos = Skopos(app, config=EndpointConfig(cors_origins=["https://www.example.com"]))
        skopos.sdk.track_server_event(None, "nightly-report")
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        sdk: SkoposSDK | None = None,
        config: EndpointConfig | None = None,
    ) -> None:
        self.config = config
        self._given = sdk
        self._options: dict[str, Any] | None = None
        self._lazy: LazySdk | None = None if sdk is None else LazySdk(lambda: sdk, sdk)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the blueprint on ``app`` and store the extension in ``app.extensions``.

        Example::

            skopos = Skopos()

            def create_app() -> Flask:
                app = Flask(__name__)
                app.config["SKOPOS"] = {"site_id": "abc123", "batch": True}
                skopos.init_app(app)
                return app
        """
        settings = split_settings(app.config.get("SKOPOS") or {}, where='app.config["SKOPOS"]')
        config, options = self.config or settings.endpoint, settings.sdk_options
        if self._given is not None and options:
            raise ConfigurationError(
                f'app.config["SKOPOS"] sets SDK options ({", ".join(sorted(options))}) but'
                " Skopos(sdk=...) was given a started SDK, which they cannot change"
            )
        if self._lazy is None:
            self._options = options
            self._lazy = LazySdk(lambda: SkoposSDK.init(**options))
        elif self._given is None and options != self._options:
            raise ConfigurationError(
                "one Skopos extension starts one SDK: this app's SDK options differ from"
                " those of the app it was first initialised with; use one extension per app"
            )
        app.register_blueprint(self._blueprint(config))
        app.extensions["skopos"] = self
        # Here, where the app is set up (the main thread, usually): the SDK itself starts
        # in a request thread, where no signal handler can be installed.
        install_sigterm_handler(options)

    @property
    def sdk(self) -> SkoposSDK:
        """The SDK, started now if it is not yet; ``ConfigurationError`` for a bad option
        (PocketBase itself is the SDK's business: it connects in the background).

        Example::

            skopos.sdk.track_server_event(request, "signup", {"plan": "pro"})
        """
        return self._source().get()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush for at most ``timeout`` seconds and stop the SDK, if it was started.

        Never starts one. After it, a new event request starts a new SDK (one you
        passed in stays shut down).

        Example::

            skopos.shutdown(timeout=5.0)  # gunicorn's worker_exit hook
        """
        if self._lazy is not None:
            self._lazy.shutdown(timeout)

    def _source(self) -> LazySdk:
        if self._lazy is None:
            raise RuntimeError("Skopos.init_app(app) has not been called")
        return self._lazy

    def _blueprint(self, config: EndpointConfig) -> Blueprint:
        lazy = self._source()
        blueprint = Blueprint("skopos", __name__)

        def queued(headers: dict[str, str], queue: Accept) -> flask.Response:
            """The body read (at most the limit) and handed to ``queue`` (the SDK started
            if need be): 411 without a length, 503 when the SDK cannot start."""
            environ = request.environ
            if request.content_length is None and not environ.get("wsgi.input_terminated"):
                return _flask_response(Response(411))
            # Werkzeug's stream stops at Content-Length; the cap covers a chunked body.
            body = request.stream.read(config.max_body_bytes + 1)
            return _flask_response(
                lazy.run(
                    lambda sdk: (
                        Response(503) if sdk is None else queue(config, sdk, environ, headers, body)
                    )
                )
            )

        def event() -> flask.Response:
            headers = _endpoint_headers()
            response = precheck(config, request.method, headers)
            if response is not None:
                return _flask_response(response)
            return queued(headers, accept)

        def script() -> flask.Response:
            return _flask_response(script_response(_endpoint_headers()))

        def collect() -> flask.Response:
            headers = _endpoint_headers()
            method = request.method
            sdk = lazy.peek()
            if sdk is None and method == "OPTIONS":
                # Which pages may post depends on the sites the SDK serves: start it.
                response = lazy.run(
                    lambda started: collect_precheck(config, method, headers, site_hosts(started))
                )
            else:
                response = collect_precheck(config, method, headers, site_hosts(sdk))
            if response is not None:
                return _flask_response(response)
            return queued(headers, accept_collect)

        def collect_status() -> flask.Response:
            hosts = site_hosts(lazy.peek())
            return _flask_response(collect_health(config, _endpoint_headers(), hosts))

        # OPTIONS is ours: a CORS preflight needs precheck's headers, not Flask's default.
        blueprint.add_url_rule(
            config.event_path,
            "event",
            event,
            methods=["POST", "OPTIONS"],
            provide_automatic_options=False,
        )
        if config.script_path:
            blueprint.add_url_rule(config.script_path, "script", script, methods=["GET"])
        if config.collect_path is not None and config.health_path is not None:
            blueprint.add_url_rule(
                config.collect_path,
                "collect",
                collect,
                methods=["POST", "OPTIONS"],
                provide_automatic_options=False,
            )
            blueprint.add_url_rule(
                config.health_path, "collect_health", collect_status, methods=["GET"]
            )
        return blueprint
