"""lars: a client of lars-agent, the Lars load-balancing agent.

    import lars

    with lars.Client(base_port=8888, workers=3) as client:
        with client.call(modid, cmdid) as host:   # reported when the block ends
            do_request(host.ip, host.port)

See README.md. Standard library only; a Client belongs to one thread.
"""

from .client import Client, Host
from .errors import (Error, NoAgent, NoSuchModule, Overloaded, ProtocolError,
                     SocketError, SystemError, Timeout)

__version__ = "0.1.0"

__all__ = ["Client", "Host", "Error", "NoAgent", "Timeout", "NoSuchModule",
           "Overloaded", "SystemError", "ProtocolError", "SocketError"]
