# Public names of this package: what a notebook or a user calls, imported on first use
# (lazy_loader reads this stub); `name as name` marks each as re-exported for type checkers.
# Modules not listed here stay importable by their full path (`from saelab.x.module import y`).
from .replicas import Replicas as Replicas, split_world as split_world, whole_world as whole_world
from .world import World as World, join as join, leave as leave
