"""Qwen2-Audio in this kernel with transformers: ``-m local:PATH_OR_HUB_ID``.

Needs the optional extra (``pip install 'qaudio_magic[local]'``: torch and transformers).
The model and its processor are loaded once per kernel and reused (cached by source,
device and dtype): a GPU when there is one (bf16, else fp16), Apple's MPS (fp16), else
the CPU (fp32).

The conversation goes through the processor's own chat template, which numbers the clips
"Audio 1:", "Audio 2:" across the whole conversation, so every clip of the history is
passed to ``processor(audio=[...])`` in order, as 16 kHz mono float32 (transformers 5
takes ``audio=``; the old ``audios=`` is silently ignored). Text streams out of a
``TextIteratorStreamer`` fed by ``generate`` on a thread; a stopping criterion tied to a
flag ends generation at the next token when the iterator is closed or Ctrl-C is pressed.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, QAudioError
from ..models import lookup, served_name
from .base import AudioPart, Completion, Event, Limits, Message, Request, TextDelta, Usage

__all__ = ["LocalBackend", "RunStats", "loaded_models", "unload_models"]

SAMPLE_RATE = 16_000
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SAMPLING = ("top_p", "top_k", "repetition_penalty")
_EXTRA_HINT = "pip install 'qaudio_magic[local]' (install the CPU or CUDA build of torch first)"


@dataclass
class RunStats:
    """What the last generation did (for diagnostics)."""

    prompt_tokens: int = 0
    audio_tokens: int = 0
    max_new_tokens: int = 0
    generated: int = 0  # new tokens so far
    completed: bool = False  # ran to eos or max_new_tokens, not stopped early


@dataclass
class _Loaded:
    model: Any
    processor: Any
    device: str
    dtype: Any
    lock: threading.Lock


_models: dict[tuple[str, str, str], _Loaded] = {}
_models_lock = threading.Lock()


def loaded_models() -> list[tuple[str, str, str]]:
    """(source, device, dtype) of every model loaded in this kernel."""
    with _models_lock:
        return list(_models)


def unload_models() -> None:
    """Forget loaded models so their memory can be freed."""
    with _models_lock:
        _models.clear()


class LocalBackend:
    """Qwen2AudioForConditionalGeneration + its processor, run in this process."""

    route = "local"

    def __init__(self, device: str | None = None) -> None:
        _require_extra()
        self.device = device  # None: choose (cuda, mps, cpu)
        self.last_run: RunStats | None = None

    def limits(self, model: str) -> Limits:
        return lookup(model).limits

    def close(self) -> None:
        """Nothing to close; models stay loaded for the kernel (see :func:`unload_models`)."""

    def stream(self, request: Request) -> Iterator[Event]:
        source = resolve_source(served_name(request.model))
        conversation, audio = _conversation(request.messages)
        loaded = _load(source, self.device)
        gen, seed = _generation_kwargs(request.params, self.limits(request.model))
        inputs = _inputs(loaded, conversation, audio)
        yield from self._generate(loaded, inputs, gen, seed)

    # ------------------------------------------------------------------ generation
    def _generate(
        self, loaded: _Loaded, inputs: Any, gen: dict[str, Any], seed: int | None
    ) -> Iterator[Event]:
        import torch

        ids = inputs["input_ids"]
        stats = RunStats(
            prompt_tokens=int(ids.shape[-1]),
            audio_tokens=int((ids == loaded.processor.audio_token_id).sum()),
            max_new_tokens=int(gen["max_new_tokens"]),
        )
        self.last_run = stats
        stop = threading.Event()
        streamer = _token_streamer(loaded.processor.tokenizer)
        failure: list[BaseException] = []
        loaded.lock.acquire()  # one generation per model at a time; the thread releases it

        def run() -> None:
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.inference_mode():
                    loaded.model.generate(
                        **inputs,
                        **gen,
                        streamer=streamer,
                        stopping_criteria=_stop_criteria(stop, stats),
                    )
            except BaseException as exc:
                failure.append(exc)
                streamer.end()
            finally:
                loaded.lock.release()

        thread = threading.Thread(target=run, name="qaudio-local-generate", daemon=True)
        try:
            thread.start()
        except BaseException:
            loaded.lock.release()
            raise
        try:
            while True:
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:  # the short timeout keeps Ctrl-C responsive
                    # (no `continue` here: on CPython 3.11-3.12 a KeyboardInterrupt at that jump
                    # skips the `finally` below, and generation would go on)
                    if not thread.is_alive() and streamer.text_queue.empty():
                        break
                    piece = ""
                if piece:
                    yield TextDelta(piece)
            thread.join()
            if failure:
                raise _generation_error(failure[0])
            stats.completed = True
            yield Completion(
                Usage(
                    input_tokens=stats.prompt_tokens - stats.audio_tokens,
                    output_tokens=stats.generated,
                    audio_tokens=stats.audio_tokens,
                ),
                None,
                "length" if stats.generated >= stats.max_new_tokens else "stop",
            )
        finally:
            stop.set()  # closed early or Ctrl-C: generation ends at the next token
            thread.join()


# ---------------------------------------------------------------------- loading
def _require_extra() -> None:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise ConfigError(
            f"local models need torch and transformers ({exc.name or 'a package'} is not "
            "installed)",
            hint=_EXTRA_HINT,
        ) from None
    if not hasattr(transformers, "Qwen2AudioForConditionalGeneration"):
        raise ConfigError(
            f"transformers {transformers.__version__} has no Qwen2-Audio",
            hint="pip install -U 'transformers>=5'",
        )


def resolve_source(source: str) -> str:
    """A model directory (checked to hold Qwen2-Audio) or a hub id such as Qwen/Qwen2-Audio-7B-Instruct."""
    if not source.strip():
        raise ConfigError("local: needs a model directory or hub id (local:PATH_OR_HUB_ID)")
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{source}: not a model directory (it is a file)")
        config = path / "config.json"
        if not config.is_file():
            raise ConfigError(f"{source}: no model there (no config.json)")
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{source}: unreadable config.json ({exc})") from None
        if model_type != "qwen2_audio":
            raise ConfigError(
                f"{source}: holds a {model_type!r} model, not Qwen2-Audio (model_type 'qwen2_audio')"
            )
        return str(path.resolve())
    if _HUB_ID.fullmatch(source):
        return source
    raise ConfigError(
        f"{source}: no such directory, and not a hub id like Qwen/Qwen2-Audio-7B-Instruct"
    )


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _device_dtype(device: str | None) -> tuple[str, Any]:
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if device.startswith("cuda"):
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return device, torch.float16
    return device, torch.float32


def _load(source: str, device: str | None) -> _Loaded:
    dev, dtype = _device_dtype(device)
    key = (source, dev, str(dtype))
    with _models_lock:
        hit = _models.get(key)
        if hit is not None:
            return hit
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        # Straight onto the GPU when accelerate is there; else load, then move.
        direct = dev != "cpu" and _have("accelerate")
        try:
            processor = AutoProcessor.from_pretrained(source)
            model: Any = Qwen2AudioForConditionalGeneration.from_pretrained(
                source, dtype=dtype, device_map=dev if direct else None
            )
            if not direct:
                model = model.to(dev)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"{source}: cannot load the model: {first[:200]}") from None
        if not hasattr(processor, "feature_extractor") or not hasattr(processor, "audio_token_id"):
            raise ConfigError(f"{source}: no Qwen2-Audio processor (processor_config.json)")
        model.eval()
        loaded = _Loaded(model, processor, dev, dtype, threading.Lock())
        _models[key] = loaded
        return loaded


# ---------------------------------------------------------------------- inputs
def _conversation(messages: tuple[Message, ...]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Chat-template messages and every clip's samples, in conversation order."""
    conversation: list[dict[str, Any]] = []
    audio: list[Any] = []
    for message in messages:
        if message.role != "user":
            conversation.append({"role": message.role, "content": message.text})
            continue
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, AudioPart):
                prepared = part.audio
                if prepared.pcm is None:
                    raise InputError(
                        f"{prepared.clip.name}: local models need the audio itself; "
                        "download it and pass the file"
                    )
                content.append({"type": "audio", "audio_url": prepared.clip.name})
                audio.append(prepared.pcm)
            elif part.text:
                content.append({"type": "text", "text": part.text})
        conversation.append({"role": "user", "content": content})
    return conversation, audio


def _inputs(loaded: _Loaded, conversation: list[dict[str, Any]], audio: list[Any]) -> Any:
    processor = loaded.processor
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    kwargs: dict[str, Any] = {"text": prompt, "return_tensors": "pt", "padding": True}
    if audio:
        kwargs.update(audio=audio, sampling_rate=SAMPLE_RATE)
    try:
        inputs = processor(**kwargs)
    except ValueError as exc:
        raise InputError(f"the local processor refused the input: {exc}") from None
    inputs = inputs.to(loaded.device)
    if "input_features" in inputs:
        inputs["input_features"] = inputs["input_features"].to(loaded.dtype)
    return inputs


def _generation_kwargs(params: dict[str, Any], limits: Limits) -> tuple[dict[str, Any], int | None]:
    """DashScope-style parameters as ``generate`` arguments; unknown ones are refused."""
    rest = dict(params)
    max_new = rest.pop("max_tokens", None) or rest.pop("max_new_tokens", None)
    gen: dict[str, Any] = {"max_new_tokens": int(max_new or limits.max_output_tokens)}
    temperature = rest.pop("temperature", None)
    if temperature is not None:
        if float(temperature) <= 0:
            gen["do_sample"] = False  # 0: greedy, as the services read it
        else:
            gen.update(do_sample=True, temperature=float(temperature))
    for name in _SAMPLING:
        if name in rest:
            gen[name] = rest.pop(name)
    seed = rest.pop("seed", None)
    if rest:
        raise InputError(
            f"local models do not take {', '.join(sorted(rest))} (they take max_tokens, "
            "temperature, top_p, top_k, repetition_penalty, seed)"
        )
    return gen, None if seed is None else int(seed)


def _token_streamer(tokenizer: Any) -> Any:
    """A ``TextIteratorStreamer`` that hands over text after every token, not every word.

    The stock streamer waits for a space, which shows CJK-free text word by word and
    text without spaces only at the end. Qwen's byte-level BPE decodes prefix-stably,
    so only a trailing incomplete UTF-8 sequence (decoded as U+FFFD) is held back.
    The short queue timeout keeps the consuming loop responsive to Ctrl-C.
    """
    from transformers import TextIteratorStreamer

    class _PerTokenStreamer(TextIteratorStreamer):
        def put(self, value: Any) -> None:
            if len(value.shape) > 1:
                if value.shape[0] > 1:
                    raise ValueError("one conversation at a time")
                value = value[0]
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.tolist())
            text = str(self.tokenizer.decode(self.token_cache, **self.decode_kwargs))
            end = len(text)
            while end > self.print_len and text[end - 1] == "\ufffd":
                end -= 1
            printable = text[self.print_len : end]
            if end == len(text) and text.endswith("\n"):  # start afresh: decoding stays short
                self.token_cache, self.print_len = [], 0
            else:
                self.print_len = end
            if printable:
                self.on_finalized_text(printable)

    return _PerTokenStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=0.1)


def _stop_criteria(flag: threading.Event, stats: RunStats) -> Any:
    """A stopping criterion that ends generation once ``flag`` is set; counts new tokens."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _StopOnFlag(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            stats.generated = int(input_ids.shape[-1]) - stats.prompt_tokens
            return torch.full(
                (input_ids.shape[0],), flag.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_StopOnFlag()])


def _generation_error(exc: BaseException) -> QAudioError:
    if isinstance(exc, QAudioError):
        return exc
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return QAudioError(f"the local model failed: {type(exc).__name__}: {text}")
