"""The Flask application: device API (api.py) and dashboard (ui.py) over one
Store and one MQTT Bridge."""
import logging

from flask import Flask

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
    return app


def setup_logging(debug=False):
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # paho's and waitress' own chatter stays at warnings.
    logging.getLogger("waitress").setLevel(logging.WARNING)
