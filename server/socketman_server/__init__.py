"""SocketMan's reference fleet server: the other end of docs/PROTOCOL.md
(HTTP API, MQTT events and jobs, provisioning) with a web dashboard."""
VERSION = "0.1.0"
