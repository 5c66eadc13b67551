"""Source ``hf`` (online only): a Hugging Face dataset, streamed with the ``datasets``
package until the corpus holds ``target_tokens``."""

from __future__ import annotations

from collections.abc import Iterator

from saelab.corpus.config import CorpusConfig, Document
from saelab.corpus.counting import TokenCounter
from saelab.corpus.filters import DocumentFilter, chunk_text


def documents(cfg: CorpusConfig, count: TokenCounter) -> Iterator[Document]:
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "CorpusConfig(source='hf') streams text with the `datasets` package, which is not "
            "installed (pip install datasets). Offline, use CorpusConfig(source='offline')."
        ) from err
    try:
        stream = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config, split=cfg.hf_split, streaming=True)
        if cfg.hf_shuffle_buffer:
            stream = stream.shuffle(seed=cfg.seed, buffer_size=cfg.hf_shuffle_buffer)
    except Exception as err:  # the hub raises many types (ConnectionError, HfHubHTTPError, ...)
        raise ConnectionError(
            f"Could not stream {cfg.hf_dataset!r} (split {cfg.hf_split!r}) from the Hugging Face hub: "
            f"{err}. This needs the network; offline, use CorpusConfig(source='offline')."
        ) from err
    filt = DocumentFilter(cfg)
    total = 0
    for i, row in enumerate(stream):
        if cfg.hf_text_field not in row:
            raise KeyError(f"{cfg.hf_dataset!r} rows have no field {cfg.hf_text_field!r}; fields: {sorted(row)}")
        for j, chunk in enumerate(chunk_text(str(row[cfg.hf_text_field]), cfg.max_doc_chars)):
            text = filt(chunk)
            if text is None:
                continue
            yield Document(text, "hf", f"{cfg.hf_dataset}[{i}]#{j}")
            total += count([text])[0]
            if total >= cfg.target_tokens:
                return
