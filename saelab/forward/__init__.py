"""The forward pass below evaluation and interventions: resuming a run from a hook with the
activation there (``resume``, with the model's head in ``unembed``), the one next-token loss
(``losses``), and the one engine that runs edited copies of token rows in memory-bounded
chunks and reduces their logits (``edited_rows``).

Internal machinery: ``evals`` and ``interventions`` build on it, notebooks call those. Import
by module path (``from saelab.forward.resume import resume``).
"""
