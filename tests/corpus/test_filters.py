"""saelab.corpus.filters: the junk filter catches binary, minified, tabular and licence text,
and chunking respects the limit, cutting code at top-level blocks."""

from __future__ import annotations

from saelab.corpus import CorpusConfig
from saelab.corpus.filters import DocumentFilter, chunk_text, junk_reason


def test_junk_filter_catches_binary_minified_tables_and_licences():
    cfg = CorpusConfig()
    assert junk_reason("short", cfg) == "short"
    assert junk_reason("abc\x00def" * 10, cfg) == "binary"
    assert junk_reason("var a=1;" * 200, cfg) == "long_line"
    assert junk_reason("x" * 300 + " and some words", cfg) == "no_spaces"
    assert junk_reason("\n".join("0.25 1.5e-3 -7.0 12" for _ in range(20)), cfg) == "not_text"
    mit = (
        "Permission is hereby granted, free of charge, to any person obtaining a copy. "
        "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, INCLUDING THE "
        "WARRANTIES OF MERCHANTABILITY."
    )
    assert junk_reason(mit, cfg) == "license"
    assert junk_reason("def add(a, b):\n    return a + b  # plain code is fine", cfg) is None
    filt = DocumentFilter(cfg)
    assert filt("A fortune told twice.  ") == "A fortune told twice."
    assert filt("A  fortune told\ntwice.") is None and filt.rejected["duplicate"] == 1


def test_chunks_respect_the_limit_and_cut_code_at_top_level_blocks():
    code = "\n\n".join(f"def f{i}(x):\n    y = x + {i}\n\n    return y * 2\n" for i in range(30))
    chunks = chunk_text(code, 200, code=True)
    assert all(len(c) <= 200 for c in chunks)
    assert all(c.startswith("def f") for c in chunks)
    assert "".join(chunks).replace("\n", "") == code.replace("\n", "")
    assert chunk_text("word " * 100, 50) == [("word " * 100)[i : i + 50] for i in range(0, 500, 50)]
