"""The Flask application: device API (api.py), dashboard (ui.py), the
operators' pages (admin.py) and releases and rollouts (rollouts_ui.py) over
one Store and one MQTT Bridge, behind the door of guard.py."""
import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from . import admin, api, guard, rollouts_ui, tunnel_pages, ui


def create_app(settings, store, bridge):
    """A WSGI app. settings: Settings; store: db.Store; bridge: anything with
    `connected` and `send(job, device)` (bridge.Bridge)."""
    app = Flask(__name__)
    app.config.update(SETTINGS=settings, STORE=store, BRIDGE=bridge,
                      # Werkzeug answers 413 past this, before reading the body.
                      MAX_CONTENT_LENGTH=settings.max_body, MAX_FORM_MEMORY_SIZE=settings.max_body)
    guard.init_app(app, settings, store)
    app.register_blueprint(api.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(rollouts_ui.bp)
    app.register_blueprint(tunnel_pages.bp)

    @app.get("/healthz")
    @guard.public
    def healthz():
        """For load balancers and tests: 200 with whether the MQTT bridge is
        subscribed (a server without its broker still takes stats) and what
        it received: messages, bad ones dropped, ones it failed to record."""
        return jsonify(ok=True, broker=bool(bridge.connected), mqtt=dict(getattr(bridge, "counts", {})))

    @app.errorhandler(HTTPException)
    def _http_error(e):
        # The dashboard's refusals (400 bad form, 404, 405, 413) in the shape
        # the client reads: JSON for API token clients and .json URLs.
        if request.blueprint != "api" and guard.wants_json():
            return guard.refuse(e.code, e.description or e.name)
        return e

    return app


def setup_logging(debug=False):
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # alembic's and uvicorn's own chatter stays at warnings.
    for name in ("alembic", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
