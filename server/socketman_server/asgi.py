"""The server on one port: uvicorn runs a small Starlette app that sends the
tunnel WebSockets (/tunnel and /tunnel/<id>, tunnels.py) to the tunnel
service and every HTTP request (device API, dashboard, /healthz) to the
Flask app of app.py, which a2wsgi runs in a pool of --threads threads.
Devices, operators and tunnels share one port, so one TLS proxy in front
(nginx on 443) carries them all."""
import contextlib
import logging
import signal
import socket

from a2wsgi import WSGIMiddleware
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket

from .tunnel_wire import FRAME_MAX, deny
from .tunnels import TunnelService

# The WebSocket keepalive (PROTOCOL 11): a ping after 30 s, and the
# connection is given up when no pong came 60 s later (a pong can wait
# behind a full send buffer on a slow uplink).
PING_INTERVAL_S, PING_TIMEOUT_S = 30, 60


def _input_terminated(wsgi_app):
    """a2wsgi hands Flask the whole request body as a stream that ends with
    it; saying so lets Werkzeug read a chunked body (bounded by Flask's
    MAX_CONTENT_LENGTH), as it did under waitress."""
    def app(environ, start_response):
        environ["wsgi.input_terminated"] = True
        return wsgi_app(environ, start_response)
    return app


def create_asgi(settings, store, bridge, flask_app):
    """(ASGI app, TunnelService): the tunnel routes, then Flask for
    everything else. A WebSocket to any other path is a 404."""
    service = TunnelService(settings, store, bridge, flask_app)
    wsgi = WSGIMiddleware(_input_terminated(flask_app), workers=settings.threads)

    async def flask_or_404(scope, receive, send):
        if scope["type"] == "http":
            return await wsgi(scope, receive, send)
        await deny(WebSocket(scope, receive, send), 404, "no WebSocket here: tunnels are /tunnel and /tunnel/<id>")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(routes=[WebSocketRoute("/tunnel", service.operator_endpoint),
                            WebSocketRoute("/tunnel/{tid}", service.device_endpoint),
                            Mount("", app=flask_or_404)],
                    lifespan=lifespan)
    return app, service


def bind(settings):
    """The listening socket of --listen (OSError when it cannot be had:
    the caller says so before anything else starts)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    return socket.create_server((settings.host, settings.port), family=family, backlog=2048)


def run(settings, store, bridge, flask_app, sock):
    """Serve on `sock` (bind()) until SIGTERM or Ctrl-C (then: open tunnels closed, requests
    under way finished, at most 10 s). X-Forwarded-* headers are not
    uvicorn's business: the Flask side believes them through ProxyFix and
    the tunnel side through tunnel_wire.handshake_view, both only with
    --behind-proxy N."""
    import uvicorn

    app, service = create_asgi(settings, store, bridge, flask_app)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="asyncio", http="h11", ws="websockets-sansio",
        ws_max_size=FRAME_MAX, ws_per_message_deflate=False,
        ws_ping_interval=PING_INTERVAL_S, ws_ping_timeout=PING_TIMEOUT_S,
        proxy_headers=False, server_header=False, headers=[("server", "socketman-server")],
        lifespan="on", timeout_graceful_shutdown=10, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    service.stopping = lambda: server.should_exit
    # uvicorn logs each WebSocket's path with its query at INFO: a device's
    # access_token is in it. Its warnings and errors still show.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # uvicorn takes SIGINT and SIGTERM while it serves, stops cleanly, then
    # raises the signal again: these handlers turn that into a clean exit.
    signal.signal(signal.SIGTERM, stop)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0
