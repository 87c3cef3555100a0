"""Pushing job state to open pages: events publishes, consumers forward, fragments render, routing
maps the websocket paths."""
