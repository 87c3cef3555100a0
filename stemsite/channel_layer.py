"""The channel layer that carries pushes to open pages, built from a Redis URL."""

from redis.connection import parse_url


def channel_layers(url: str) -> dict:
    """CHANNEL_LAYERS on Redis pub/sub at `url`.

    Redis pub/sub channels ignore the database number, so two sites (or two test processes)
    sharing one Redis on different databases would hear each other's pushes. The prefix carries
    the database number to keep them apart.
    """
    database = int(parse_url(url).get("db", 0))
    return {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": url, "socket_timeout": 30}],
                "prefix": f"stemsite-db{database}",
            },
        },
    }
