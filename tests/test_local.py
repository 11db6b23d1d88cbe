"""``-m local:DIR`` with a tiny random Qwen2-Audio built in code (no download, CPU, ~1 s).

The model is saved to a temporary directory and loaded through ``local:<dir>`` exactly
as a user's checkpoint would be; the real processor, chat template and ``generate`` run.
Skips only when torch/transformers are not installed (CI installs them).
"""

from __future__ import annotations

import _thread
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic.backends import local
from qaudio_magic.session import get_session

needs_torch = pytest.mark.skipif(
    not all(local._have(m) for m in ("torch", "transformers")),
    reason="torch/transformers not installed (pip install 'qaudio_magic[local]')",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``local:<dir>`` of a freshly built tiny model."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    mp = pytest.MonkeyPatch()
    _offline(mp)
    from qaudio_magic.backends.tiny_qwen2_audio import save_tiny_qwen2_audio

    path = save_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))
    yield f"local:{path}"
    local.unload_models()
    mp.undo()


def _offline(mp: pytest.MonkeyPatch) -> None:
    """Nothing may be downloaded (the constant is read once, at import)."""
    import huggingface_hub.constants

    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "qaudio-local-generate"]


def _reference(model_dir: str, conversation: list, clips: list[Path], max_new: int) -> str:
    """The same conversation through transformers directly, greedy: what must come out."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from qaudio_magic import _codec

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(model_dir)
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert prompt.count("<|AUDIO|>") == len(clips) and "Audio 2:" in prompt
    pcm = [_codec.decode(c, name=c.name) for c in clips]
    inputs = processor(
        text=prompt, audio=pcm, sampling_rate=16_000, return_tensors="pt", padding=True
    )
    out = model.generate(**inputs, max_new_tokens=max_new, do_sample=False)
    return processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )


@needs_torch
def test_two_clip_conversation_streams_through_generate(
    ip, tiny: str, audio: Path, monkeypatch
) -> None:
    local.unload_models()
    from transformers import Qwen2AudioForConditionalGeneration

    loads = []
    real_load = Qwen2AudioForConditionalGeneration.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0])
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(
        Qwen2AudioForConditionalGeneration, "from_pretrained", classmethod(counting)
    )
    events: list = []
    real_stream = local.LocalBackend.stream

    def spy(self, request):
        for event in real_stream(self, request):
            events.append(event)
            yield event

    monkeypatch.setattr(local.LocalBackend, "stream", spy)

    a, b = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    options = f"-m {tiny} -p max_tokens=12 temperature=0"
    first = ip.run_cell_magic("qaudio", f"{a} {options}", "What is said?")
    events.clear()
    with capture_output() as cap:
        second = ip.run_cell_magic("qaudio", f"{b} {options}", "And in this one?")

    model_dir = tiny.removeprefix("local:")
    assert loads == [model_dir], "the model must load once per kernel and be reused"
    expected = _reference(
        model_dir,
        [
            {
                "role": "user",
                "content": [{"type": "audio"}, {"type": "text", "text": "What is said?"}],
            },
            {"role": "assistant", "content": first.text},
            {
                "role": "user",
                "content": [{"type": "audio"}, {"type": "text", "text": "And in this one?"}],
            },
        ],
        [a, b],
        12,
    )
    assert second.text == expected and expected
    deltas = [e.text for e in events if hasattr(e, "text")]
    assert len(deltas) > 1 and "".join(deltas) == second.text  # streamed, token by token
    # both clips of the conversation reached the model, in order: 5.11 s → 128, 3 s → 75 tokens
    assert first.usage.audio_tokens == 128
    assert second.usage.audio_tokens == 128 + 75
    assert second.usage.output_tokens == 12 and second.finish_reason == "length"
    assert local.loaded_models() == [(model_dir, "cpu", "torch.float32")]
    final = cap.outputs[-1].data["text/plain"]
    assert f"{tiny} · audio 8.1 s ≈ 203 tok (service: 203)" in final
    assert "tone_440hz_3s.wav" in final
    assert not _generation_threads()


@needs_torch
def test_ctrl_c_stops_generation_at_the_next_token(ip, tiny: str, audio: Path) -> None:
    backend = get_session().backend(tiny)  # the instance the magic will use
    max_new = 3000  # ~15 s on this CPU if nothing stopped it

    def press_ctrl_c_once_running() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = backend.last_run
            if run is not None and run.generated >= 5:
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {tiny} -p max_tokens=4", "First")
    turns = get_session().conversations.current.turns
    backend.last_run = None
    watcher = threading.Thread(target=press_ctrl_c_once_running)
    watcher.start()
    with capture_output() as cap, pytest.raises(UsageError, match=r"^interrupted: the partial"):
        ip.run_cell_magic("qaudio", f"-m {tiny} -p max_tokens={max_new}", "Go on and on")
    watcher.join()
    run = backend.last_run
    assert run is not None and not run.completed
    assert 5 <= run.generated < max_new // 10, f"generation went on: {run.generated} tokens"
    assert not _generation_threads(), "the generate thread must have ended"
    assert get_session().conversations.current.turns == turns
    assert "Interrupted" in cap.outputs[-1].data["text/plain"]


@needs_torch
def test_closing_the_stream_stops_generation(tiny: str, audio: Path) -> None:
    from qaudio_magic._prepare import prepare
    from qaudio_magic.backends.base import AudioPart, Message, Request, TextPart
    from qaudio_magic.clip import AudioClip

    backend = local.LocalBackend()
    clip = prepare(AudioClip.from_source(audio / "speech_en.wav"), backend.limits(tiny))
    request = Request(
        tiny,
        (Message("user", (AudioPart(clip), TextPart("Talk"))),),
        params={"max_tokens": 3000, "temperature": 0},
    )
    events = backend.stream(request)
    next(events)  # the first piece of text
    events.close()
    assert backend.last_run is not None and not backend.last_run.completed
    assert backend.last_run.generated < 300
    assert not _generation_threads()


@needs_torch
def test_model_directory_problems_are_one_line(ip, tmp_path: Path, audio: Path) -> None:
    clip = audio / "speech_en.wav"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match=rf"^{empty}: no model there \(no config.json\)$"):
        ip.run_cell_magic("qaudio", f"{clip} -m local:{empty}", "Q")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UsageError, match="holds a 'bert' model, not Qwen2-Audio"):
        ip.run_cell_magic("qaudio", f"{clip} -m local:{other}", "Q")
    with pytest.raises(UsageError, match="no such directory, and not a hub id"):
        ip.run_cell_magic("qaudio", f"{clip} -m local:./no/such/model", "Q")
    with pytest.raises(UsageError, match=r"local: needs a model directory or hub id"):
        ip.run_cell_magic("qaudio", f"{clip} -m local:", "Q")
    assert len(get_session().conversations.current) == 0


@needs_torch
def test_uncached_hub_id_offline_is_one_line(ip, audio: Path, monkeypatch) -> None:
    _offline(monkeypatch)
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic(
            "qaudio", f"{audio / 'speech_en.wav'} -m local:qaudio-test/not-a-real-model", "Q"
        )
    assert str(err.value).startswith("qaudio-test/not-a-real-model: cannot load the model: ")
    assert "\n" not in str(err.value)


@needs_torch
def test_unknown_parameters_are_refused_and_url_clips_downloaded(
    ip, tiny: str, audio: Path, file_server
) -> None:
    with pytest.raises(UsageError, match=r"local models do not take stop \(they take max_tokens"):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {tiny} -p stop=x", "Q")
    base, root = file_server
    with pytest.raises(UsageError, match=r"missing\.wav: cannot fetch it \(HTTP 404"):
        ip.run_cell_magic("qaudio", f"{base}/missing.wav -m {tiny} -p max_tokens=2", "Q")
    assert len(get_session().conversations.current) == 0
    # a model in the kernel needs the samples: a URL clip is downloaded (capped) and decoded
    shutil.copy(audio / "speech_en.wav", root)
    answer = ip.run_cell_magic("qaudio", f"{base}/speech_en.wav -m {tiny} -p max_tokens=2", "Q")
    assert answer.usage.audio_tokens == 128 and len(get_session().conversations.current) == 1


def test_missing_extra_is_a_clear_error(ip, audio: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m local:/models/qwen2-audio", "Q")
    text = str(err.value)
    assert text.startswith("local models need torch and transformers (")
    assert "is not installed) — pip install 'qaudio_magic[local]'" in text
