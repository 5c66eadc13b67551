# Public names of this package, imported on first use (lazy_loader reads this stub);
# `name as name` marks each as re-exported for type checkers.
from . import dense as dense, pairs as pairs, select as select, sparse as sparse, ste as ste
from .dense import (
    column_counts as column_counts,
    dense_relu_encode as dense_relu_encode,
    dense_relu_encode_reference as dense_relu_encode_reference,
    matmul as matmul,
)
from .pairs import ActivePairs as ActivePairs, JoinedPairs as JoinedPairs
from .select import batch_top_indices as batch_top_indices, batch_top_indices_reference as batch_top_indices_reference
from .sparse import (
    decode_pairs as decode_pairs,
    decode_pairs_reference as decode_pairs_reference,
    selected_pre_acts as selected_pre_acts,
    selected_pre_acts_reference as selected_pre_acts_reference,
    sparse_decode as sparse_decode,
)
from .ste import jumprelu as jumprelu, rectangle as rectangle, step as step
