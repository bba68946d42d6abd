"""Exceptions of the lars client. Every one derives from lars.Error, so
``except lars.Error`` catches whatever the client raises about the agent;
bad arguments raise ValueError/TypeError as usual in Python."""


class Error(Exception):
    """Base of every error about talking to lars-agent."""


class NoAgent(Error):
    """Nothing listens on the agent's port: the kernel answered our
    datagram with ICMP port unreachable (ECONNREFUSED). Raised at once,
    without waiting for the timeout. Is lars-agent running, with the
    udp_base_port and workers this client was given?"""


class Timeout(Error):
    """No answer within the client's timeout: the agent is overloaded,
    stopped (SIGSTOP), or something else holds its port."""


class NoSuchModule(Error):
    """The agent has no route for the module (RET_NOEXIST, or an empty
    route). The agent starts pulling it at the first request, so a
    module that exists answers a moment later: see Client.reg_init."""


class Overloaded(Error):
    """Every node of the module is overloaded (RET_OVERLOAD)."""


class SystemError(Error):  # noqa: A001 - the name of the agent's retcode
    """The agent failed internally (RET_SYSTEM_ERROR), e.g. it refused a
    new module beyond agent.max_modules. Note: this shadows the builtin
    SystemError only inside code that does ``from lars import *``."""


class ProtocolError(Error):
    """The agent's answer did not decode, or made no sense (an unknown
    retcode, a success without a usable node)."""


class SocketError(Error):
    """A socket call failed for another reason than the ones above; the
    OSError is the __cause__ and its errno is copied to ``errno``."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno
