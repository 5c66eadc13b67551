# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import base as base, embedder as embedder, http as http, local as local, server as server
from .base import Backend as Backend, Chat as Chat, Message as Message
from .embedder import Embedder as Embedder, load_embedder as load_embedder
from .http import BackendError as BackendError, HttpConfig as HttpConfig, OpenAIBackend as OpenAIBackend
from .local import LocalBackend as LocalBackend, LocalConfig as LocalConfig
from .server import ServerHandle as ServerHandle, serve as serve
