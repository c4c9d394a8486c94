"""Joining a Ray cluster the user named (``--ray-address``); HAT never starts one by itself.

A Ray node started on this machine would listen on every network interface, so local
parallelism uses plain processes (:class:`hat.search.evaluators.ProcessPoolEvaluator`) and Ray
is only for clusters: remote devices and remote search workers.
"""
from __future__ import annotations

import logging
import socket
from typing import Any

from hat.errors import HatError

CONNECT_TIMEOUT_S = 10.0


def connect(address: str) -> Any:
    """The ``ray`` module, connected to the cluster at ``address`` (``HOST:PORT`` or ``auto``).

    An address that does not answer fails within ``CONNECT_TIMEOUT_S`` seconds with one line
    (Ray itself would keep reconnecting for minutes).
    """
    try:
        import ray
    except ImportError:
        raise HatError("--ray-address needs Ray: pip install 'hat-nas[ray]'") from None
    if ray.is_initialized():
        return ray
    if address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise HatError(f"--ray-address must be HOST:PORT (or auto), got '{address}'")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as err:
            raise HatError(f"cannot reach the Ray cluster at {address} ({err.strerror or err})") from None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise HatError(f"cannot join the Ray cluster at {address} ({str(err).splitlines()[0][:200]})") from None
    return ray
