"""%%qaudio end to end against the emulator over real HTTP, as a user types it."""

from __future__ import annotations

from pathlib import Path

import ipywidgets
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import AudioClip
from qaudio_magic.emulator import Emulator

from .conftest import TEST_KEY


def user_messages(emu: Emulator, n: int = -1) -> list[dict]:
    body = emu.generation_requests()[n].json
    return [m for m in body["input"]["messages"] if m["role"] == "user"]


def test_first_question_streams_answer_next_to_player(ip, emu: Emulator, audio: Path) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "What is said here?")
    assert "1 audio clip (5.11 s)" in answer.text
    assert 'question: "What is said here?"' in answer.text
    assert answer.usage.audio_tokens == 128 and answer.request_id
    # one player widget, then the answer display updated in place as text streamed in
    kinds = [set(o.data) for o in cap.outputs]
    assert "application/vnd.jupyter.widget-view+json" in kinds[0]
    assert "speech_en.wav" in cap.outputs[0].data["text/plain"]
    final = cap.outputs[-1]
    assert "Emulated answer" in final.data["text/html"]
    assert "speech_en.wav" in final.data["text/plain"] and "request " in final.data["text/plain"]
    assert final.metadata["qaudio"]["request_id"] == answer.request_id
    assert len(cap.outputs) > 2, "the answer was not streamed (no intermediate updates)"
    request = emu.generation_requests()[-1]
    assert request.headers["x-dashscope-sse"] == "enable"
    assert request.json["parameters"]["incremental_output"] is True


def test_follow_up_sends_history(ip, emu: Emulator, audio: Path) -> None:
    first = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "What is said?")
    answer = ip.run_cell_magic("qaudio", "", "And who says it?")
    assert "1 earlier turn and 1 audio clip in all" in answer.text
    messages = emu.generation_requests()[-1].json["input"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert "audio" in messages[0]["content"][0]
    assert messages[0]["content"][1] == {"text": "What is said?"}
    assert messages[1]["content"] == [{"text": first.text}]
    assert messages[2]["content"] == [{"text": "And who says it?"}]


def test_new_and_named_conversations(ip, emu: Emulator, audio: Path) -> None:
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "One")
    ip.run_cell_magic("qaudio", str(audio / "tone_440hz_3s.wav") + " --new", "Two")
    assert len(user_messages(emu)) == 1, "--new must not send the old history"
    ip.run_cell_magic("qaudio", str(audio / "speech_zh_cmn.wav") + " -c side", "Side question")
    assert len(user_messages(emu)) == 1
    ip.run_cell_magic("qaudio", "", "Back in the current one")
    assert len(user_messages(emu)) == 2, "the current conversation is the --new one"
    ip.run_cell_magic("qaudio", "-c side", "Side follow-up")
    assert len(user_messages(emu)) == 2
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "list")
    listing = cap.stdout
    assert "side: 2 turns" in listing and "* chat-" in listing


def test_voice_chat_sends_audio_only(ip, emu: Emulator, audio: Path) -> None:
    # the way a notebook user types it: IPython runs no %% cell magic with an empty body
    with pytest.raises(UsageError, match="cell body is empty"):
        ip.run_cell(f"%%qaudio {audio / 'speech_en.wav'}\n")
    ip.user_ns["clip"] = audio / "speech_en.wav"
    ip.run_cell("answer = %qaudio clip")
    answer = ip.user_ns["answer"]
    assert "voice chat" in answer.text and answer.question is None
    content = user_messages(emu)[-1]["content"]
    assert len(content) == 1 and "audio" in content[0]
    ip.run_cell(f"%qaudio {audio / 'tone_440hz_3s.wav'} --new")  # options work as in the cell form
    assert len(user_messages(emu)) == 1 and len(user_messages(emu)[-1]["content"]) == 1
    # a body of blank lines is voice chat too
    answer = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "\n  \n")
    assert "voice chat" in answer.text


def test_several_clips_in_one_cell(ip, emu: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic(
        "qaudio", f"{audio / 'speech_en.wav'} {audio / 'tone_440hz_3s.wav'}", "Compare them."
    )
    assert "2 audio clips (5.11 s; 3.00 s)" in answer.text
    content = user_messages(emu)[-1]["content"]
    assert [list(c) for c in content] == [["audio"], ["audio"], ["text"]]


def test_variable_sources(ip, emu: Emulator, audio: Path) -> None:
    wav = audio / "speech_en.wav"
    ip.user_ns.update(
        as_path=wav,
        as_str=str(wav),
        as_bytes=wav.read_bytes(),
        as_clip=AudioClip.from_source(audio / "tone_440hz_3s.wav"),
        as_widget=ipywidgets.Audio(value=(audio / "en_mp3_64k.mp3").read_bytes(), format="mp3"),
        clips=[AudioClip.from_source(wav)],
    )
    answer = ip.run_cell_magic(
        "qaudio", "as_path as_str as_bytes as_clip as_widget clips[0]", "Six?"
    )
    assert "6 audio clips (5.11 s; 5.11 s; 5.11 s; 3.00 s; 5.11 s; 5.11 s)" in answer.text


def test_params_reach_parameters(ip, emu: Emulator, audio: Path) -> None:
    ip.run_cell_magic(
        "qaudio",
        f"{audio / 'speech_en.wav'} -p temperature=0.2 top_p=0.8 -p max_tokens=5 seed=7 top_k=20",
        "Short please.",
    )
    params = emu.generation_requests()[-1].json["parameters"]
    assert params == {
        "temperature": 0.2,
        "top_p": 0.8,
        "max_tokens": 5,
        "seed": 7,
        "top_k": 20,
        "incremental_output": True,
    }


def test_max_tokens_limits_answer(ip, emu: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -p max_tokens=3", "Hi")
    assert answer.finish_reason == "length" and answer.usage.output_tokens == 3


def test_no_stream(ip, emu: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} --no-stream", "Whole answer?")
    request = emu.generation_requests()[-1]
    assert "x-dashscope-sse" not in request.headers
    assert request.headers["accept"].startswith("application/json")
    assert "incremental_output" not in request.json["parameters"]
    assert "1 audio clip (5.11 s)" in answer.text


def test_system_prompt(ip, emu: Emulator, audio: Path) -> None:
    ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} --system 'Answer in French.'", "Q")
    first = emu.generation_requests()[-1].json["input"]["messages"][0]
    assert first == {"role": "system", "content": [{"text": "Answer in French."}]}
    ip.run_cell_magic("qaudio", "", "Follow-up keeps the system prompt")
    assert emu.generation_requests()[-1].json["input"]["messages"][0]["role"] == "system"


def test_model_option_and_config(ip, emu: Emulator, audio: Path) -> None:
    ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m qwen-audio-turbo", "Q")
    assert emu.generation_requests()[-1].json["model"] == "qwen-audio-turbo"
    ip.run_line_magic("config", "QAudioMagic.model = 'qwen2-audio-instruct'")
    ip.run_cell_magic("qaudio", "", "Q2")
    assert emu.generation_requests()[-1].json["model"] == "qwen2-audio-instruct"


def test_magic_returns_answer_for_out_and_underscore(ip, emu: Emulator, audio: Path) -> None:
    ip.run_cell(f"%%qaudio {audio / 'speech_en.wav'}\nWhat is said?", store_history=True)
    last = ip.user_ns["_"]
    assert last.text.startswith("Emulated answer")
    assert ip.user_ns["Out"][ip.execution_count - 1] is last


def test_missing_file_is_one_line_and_sends_nothing(ip, emu: Emulator, tmp_path: Path) -> None:
    ip.run_cell_magic(
        "qaudio", str(Path(__file__).parent.parent / "notebooks/audio/speech_en.wav"), "Q"
    )
    before = len(emu.requests)
    missing = tmp_path / "nope.wav"
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(missing), "Q")
    assert str(err.value) == f"{missing}: no such file (looked for {missing})"
    assert len(emu.requests) == before
    with pytest.raises(UsageError, match="no audio files in this directory"):  # a dir is a batch
        ip.run_cell_magic("qaudio", str(tmp_path), "Q")
    assert len(ip.run_line_magic("qaudio", "history") or []) == 0


def test_missing_key_fails_before_sending_in_one_line_and_nothing_else(
    ip, emu: Emulator, audio: Path, monkeypatch
) -> None:
    """Issue 14 (7): no player left behind, no "…", no "⚠ Incomplete" (nothing was
    incomplete), the error once, with no Markdown backticks."""
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    with capture_output() as cap, pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert str(err.value) == (
        "no DashScope API key — set DASHSCOPE_API_KEY, run %qaudio key, or %qaudio emulator "
        "to try offline"
    )
    assert emu.requests == []
    assert [o.data for o in final_outputs(cap)] == [{}, {}], "what was drawn is gone"
    assert cap.stdout == ""


def test_a_stream_cut_after_text_is_marked_incomplete_once(ip, emu: Emulator, audio: Path) -> None:
    emu.add_fault("cut_after=3;times=1")
    with capture_output() as cap, pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    player, shown = final_outputs(cap)
    assert "application/vnd.jupyter.widget-view+json" in player.data
    plain = shown.data["text/plain"]
    assert "Emulated answer" in plain  # the text that arrived stays
    assert plain.count("⚠ Incomplete: ") == 1 and plain.endswith(
        ". The conversation was not changed."
    )
    assert str(err.value) in plain


def final_outputs(cap) -> list:
    """What each display of a captured cell shows in the end (updates applied in place)."""
    shown: list = []
    where: dict[str, int] = {}
    for out in cap.outputs:
        display_id = (out.transient or {}).get("display_id")
        if out.update and display_id in where:
            shown[where[display_id]] = out
            continue
        if display_id is not None:
            where[display_id] = len(shown)
        shown.append(out)
    return shown


def test_invalid_key_error_has_code_request_id_and_hint(
    ip, emu: Emulator, audio: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "invalid-key-for-test")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    text = str(err.value)
    assert text.startswith(
        "DashScope error 401 InvalidApiKey: Invalid API-key provided. (request id "
    )
    assert "set DASHSCOPE_API_KEY or run %qaudio key" in text
    assert "API keys are per region: check that the key belongs to the region of 127.0.0.1" in text
    assert "invalid-key-for-test" not in text and "\n" not in text


def test_free_tier_hint(ip, emu: Emulator, audio: Path) -> None:
    emu.add_fault("status=403;code=AllocationQuota.FreeTierOnly;times=1")
    with pytest.raises(UsageError, match=r"free quota is spent.*qwen3-omni-flash"):
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")


def test_failed_turn_leaves_conversation_unchanged(ip, emu: Emulator, audio: Path) -> None:
    conv = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "First").conversation
    from qaudio_magic.session import get_session

    turns_before = get_session().conversations.get(conv).turns
    emu.add_fault("error_after=3;status=400;code=DataInspectionFailed;times=1")
    with capture_output() as cap, pytest.raises(UsageError, match="DataInspectionFailed"):
        ip.run_cell_magic("qaudio", "", "Second")
    assert get_session().conversations.get(conv).turns == turns_before
    shown = cap.outputs[-1].data["text/plain"]
    assert "Incomplete" in shown and "Emulated answer from" in shown  # partial text kept, marked


def test_subcommands(ip, emu: Emulator, audio: Path) -> None:
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "First question")
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "history")
    text = cap.outputs[0].data["text/plain"]
    assert "speech_en.wav · 5.1 s" in text and "First question" in text and "audio 128" in text
    assert text.startswith("Conversation 'default': 1 turn\n")  # not "1 turns"
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "models")
    models = cap.outputs[0].data["text/plain"]
    assert "qwen-audio-turbo-latest" in models and "8,192" in models and "30 s, 10 MB" in models
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "new interviews")
        ip.run_line_magic("qaudio", "use default")
        ip.run_line_magic("qaudio", "reset")
    assert "Conversation 'default' reset (1 turn forgotten)." in cap.stdout
    with pytest.raises(UsageError, match="no conversation named 'nope'"):
        ip.run_line_magic("qaudio", "use nope")
    with pytest.raises(UsageError, match="unknown subcommand 'fly'"):
        ip.run_line_magic("qaudio", "fly")


def test_key_subcommand_reads_hidden_input(ip, emu: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "sk-typed-in-key-5678")
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "key")
    assert "sk-typed-in-key-5678" not in cap.stdout
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert emu.requests[-1].headers["authorization"] == "Bearer sk-typed-in-key-5678"


def test_help_shows_usage() -> None:
    from qaudio_magic.magic import QAudioMagic

    doc = QAudioMagic.qaudio.__doc__
    for flag in (
        "SOURCE",
        "--model",
        "--system",
        "--new",
        "--conversation",
        "--param",
        "--no-stream",
    ):
        assert flag in doc


def test_bad_param_syntax(ip, audio: Path) -> None:
    with pytest.raises(UsageError, match="-p expects KEY=VALUE"):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -p temperature", "Q")


def test_config_listing_never_shows_key(ip) -> None:
    with capture_output() as cap:
        ip.run_line_magic("config", "QAudioMagic")
    assert "model" in cap.stdout and TEST_KEY not in cap.stdout


def test_failed_new_conversation_leaves_the_user_where_they_were(
    ip, emu: Emulator, audio: Path
) -> None:
    from qaudio_magic.session import get_session

    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "First")
    convs = get_session().conversations
    emu.add_fault("status=500;times=1")
    with pytest.raises(UsageError, match="InternalError"):
        ip.run_cell_magic("qaudio", f"{audio / 'tone_440hz_3s.wav'} --new -c fresh", "Q")
    assert convs.current.name == "default" and "fresh" not in convs and len(convs.current) == 1
    ip.run_cell_magic("qaudio", f"{audio / 'tone_440hz_3s.wav'} --new -c fresh", "Q")
    assert convs.current.name == "fresh" and len(convs.current) == 1


def test_samples_with_a_literal_rate(ip, emu: Emulator) -> None:
    """Issue 14 (10): `%%qaudio noise 44100` was refused while `%%qaudio noise sr` worked."""
    import numpy as np

    ip.user_ns["noise"] = np.random.default_rng(0).normal(0, 0.1, 22050).astype("float32")
    ip.user_ns["sr"] = 22050
    by_name = ip.run_cell_magic("qaudio", "noise sr --new", "What is it?")
    literal = ip.run_cell_magic("qaudio", "noise 22050 --new", "What is it?")
    assert literal.clips[0].sha256 == by_name.clips[0].sha256
    assert "1 audio clip (1.00 s)" in literal.text


def test_history_aligns_cjk_and_config_help_is_whole(ip, emu: Emulator, audio: Path) -> None:
    """Issue 14 (10): `%qaudio history` measured CJK text by characters, not columns, and
    `%config QAudioMagic` cut the help of base_url off mid-sentence."""
    from qaudio_magic._format import width

    emu.reply_with("一个女人在说话。", "A woman speaks.")
    ip.run_cell_magic("qaudio", str(audio / "speech_zh_cmn.wav"), "这段音频里说了什么?")
    ip.run_cell_magic("qaudio", "", "And in English?")
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "history")
    rows = cap.outputs[0].data["text/plain"].splitlines()[1:]
    starts = [width(row[: row.index(answer)]) for row, answer in zip(
        rows[1:], ("一个女人在说话。", "A woman speaks."), strict=True
    )]  # fmt: skip
    assert starts[0] == starts[1], rows  # the answer column lines up on screen
    with capture_output() as cap:
        ip.run_line_magic("config", "QAudioMagic")
    help_text = " ".join(cap.stdout.split())
    assert (
        "DashScope API base URL; empty: $DASHSCOPE_HTTP_BASE_URL, then the region's endpoint"
        in help_text
    )
