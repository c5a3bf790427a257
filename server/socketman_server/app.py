"""The Flask application: device API (api.py) and dashboard (ui.py) over one
Store and one MQTT Bridge."""
import logging

from flask import Flask, jsonify

from . import api, ui


def create_app(settings, store, bridge):
    """A WSGI app. settings: Settings; store: db.Store; bridge: anything with
    `connected` and `send(job, device)` (bridge.Bridge)."""
    app = Flask(__name__)
    app.config.update(SETTINGS=settings, STORE=store, BRIDGE=bridge,
                      # Werkzeug answers 413 past this, before reading the body.
                      MAX_CONTENT_LENGTH=settings.max_body, MAX_FORM_MEMORY_SIZE=settings.max_body)
    app.register_blueprint(api.bp)
    app.register_blueprint(ui.bp)

    @app.get("/healthz")
    def healthz():
        """For load balancers and tests: 200 with whether the MQTT bridge is
        subscribed (a server without its broker still takes stats) and what
        it received: messages, bad ones dropped, ones it failed to record."""
        return jsonify(ok=True, broker=bool(bridge.connected), mqtt=dict(getattr(bridge, "counts", {})))

    return app


def setup_logging(debug=False):
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # paho's and waitress' own chatter stays at warnings.
    for name in ("waitress", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
