# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import replicas as replicas, world as world
from .replicas import Replicas as Replicas, split_world as split_world, whole_world as whole_world
from .world import (
    DEFAULT_TIMEOUT_S as DEFAULT_TIMEOUT_S,
    World as World,
    join as join,
    launched as launched,
    leave as leave,
)
