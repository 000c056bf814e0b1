"""Whether the Hugging Face Hub can be reached now: one TCP connection, so that an offline command fails in a
second with one line instead of huggingface_hub's ~25-50 s of retries. A primitive module (no zoo imports): the Hub
code and the image encoder's ``pretrained: true`` both ask it."""

from __future__ import annotations

import os


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached now, or None when it can (or when a proxy is set, whose reach a
    direct connection does not tell). One TCP connection: offline, huggingface_hub retries each request for ~25 s."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode (HF_HUB_OFFLINE) is on"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")):
        return None
    url = urlsplit(constants.ENDPOINT)
    if not url.hostname:
        return None
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
    except OSError as e:
        return f"the Hub ({url.hostname}) cannot be reached: {e.strerror or type(e).__name__} (offline?)"
    return None
