"""Today's Qwen audio models end to end against the emulator over real HTTP.

Each test types what a user would (``%%qaudio`` cells through the ``ip`` fixture, or
``ask_audio``) and checks what the user sees and what reached the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.native import GENERATION
from qaudio_magic.errors import ConfigError
from qaudio_magic.settings import check
from qaudio_magic.view import AnswerView

from ._synth import write_long_wav
from .conftest import AUDIO

SPEECH = AUDIO / "speech_en.wav"  # 5.11 s
TONE = AUDIO / "tone_440hz_3s.wav"  # 3.00 s


def _contents(request) -> list[list[str]]:
    """Each message of a chat request as the kinds of its parts."""
    out = []
    for message in request.json["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append([f"{message['role']}:text"])
        else:
            out.append([f"{message['role']}:{part['type']}" for part in content])
    return out


@pytest.fixture(scope="module")
def hour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 minutes of 8 kHz speech-band tones: a 57.6 MB WAV, far over the inline budget."""
    return write_long_wav(tmp_path_factory.mktemp("long") / "interview.wav", 3600)


def test_a_60_minute_file_reaches_qwen35_whole_at_7_tokens_per_second(
    ip, emu: Emulator, hour: Path
) -> None:
    answer = ip.run_cell_magic("qaudio", f"{hour} -m qwen3.5-omni-plus", "Summarise it.")
    (request,) = emu.chat_requests()
    item = request.json["messages"][0]["content"][0]["input_audio"]
    assert item["data"].startswith("oss://")  # a temporary upload, not 77 MB of base64
    (received,) = request.audio
    assert received.duration == 3600.0 and received.size == hour.stat().st_size
    assert "1 audio clip (3600.00 s)" in answer.text  # heard whole: no "only the first"
    assert answer.estimated_audio_tokens == 25_200  # 7 tokens per second
    assert answer.usage.audio_tokens == 25_200  # what the (emulated) service billed
    assert not any("only" in note and "is sent" in note for note in answer.notes)


def test_over_the_models_limit_the_cut_rule_applies_with_its_limit(
    ip, emu: Emulator, hour: Path
) -> None:
    answer = ip.run_cell_magic("qaudio", f"{hour} -m qwen3-omni-flash", "Summarise it.")
    (received,) = emu.chat_requests()[0].audio
    assert received.duration == 1200.0  # 20 min (150 s was the video limit)
    assert any("only 1200 s" in note for note in answer.notes)
    assert answer.estimated_audio_tokens == 15_000  # 12.5 tokens per second


def test_two_clips_go_in_one_message_to_35_and_in_two_to_3_flash(ip, emu: Emulator) -> None:
    ip.run_cell_magic("qaudio", f"{SPEECH} {TONE} -m qwen3.5-omni-plus", "Which is longer?")
    ip.run_cell_magic("qaudio", f"{SPEECH} {TONE} -m qwen3-omni-flash --new", "Which is longer?")
    to_35, to_3 = emu.chat_requests()
    assert _contents(to_35) == [["user:input_audio", "user:input_audio", "user:text"]]
    assert _contents(to_3) == [["user:input_audio"], ["user:input_audio", "user:text"]]
    assert to_35.json["modalities"] == ["text"]


def test_the_captioner_request_has_no_text(ip, emu: Emulator) -> None:
    model = "qwen3-omni-30b-a3b-captioner"
    ip.run_line_magic("config", "QAudioMagic.system = 'You are terse.'")
    answer = ip.run_cell_magic("qaudio", f"{TONE} -m {model}", "What do you hear?")
    (request,) = emu.chat_requests()
    assert _contents(request) == [["user:input_audio"]]  # no question, no system message
    assert "modalities" not in request.json
    assert answer.text.startswith(f"Emulated caption from {model}")


def test_asr_options_and_context_reach_qwen3_asr(ip, emu: Emulator) -> None:
    ip.run_line_magic("config", "QAudioMagic.system = 'Names: Bailian, DashScope.'")
    answer = ip.run_cell_magic(
        "qaudio", f"{SPEECH} -m qwen3-asr-flash -p language=en enable_itn=true", "Transcribe"
    )
    (request,) = [r for r in emu.requests if r.path == GENERATION]  # the native route
    body = request.json
    assert body["parameters"]["asr_options"] == {"language": "en", "enable_itn": True}
    assert "language" not in body["parameters"]
    assert body["input"]["messages"] == [
        {"role": "system", "content": [{"text": "Names: Bailian, DashScope."}]},
        {
            "role": "user",
            "content": [{"audio": body["input"]["messages"][1]["content"][0]["audio"]}],
        },
    ]  # context as a system message; the user message holds the audio only
    assert "x-dashscope-sse" not in request.headers  # asked without streaming
    assert "ITN on" in answer.text and 'context "Names: Bailian, DashScope."' in answer.text


def test_errors_of_these_models_come_with_a_hint(ip, emu: Emulator) -> None:
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{TONE} -m qwen3.5-omni-plus -p enable_thinking=true", "Q")
    assert "qwen3.5-omni-plus does not think: remove -p enable_thinking" in str(err.value)
    six = AUDIO / "words_at_1.5s_and_4.0s.wav"
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic(
            "qaudio",
            f"{six} -m qwen3-omni-flash -p enable_thinking=true -p reasoning_effort=low",
            "Q",
        )
    assert "qwen3-omni-flash switches thinking with -p enable_thinking=true" in str(err.value)


# ---------------------------------------------------------------------- thinking
WIDGET = "application/vnd.jupyter.widget-view+json"


def _answer_updates(outputs) -> list:
    return [
        o for o in outputs if "text/html" in o.data and WIDGET not in o.data
        and o.metadata.get("qaudio", {}).get("status") in ("streaming", "complete")
    ]  # fmt: skip


def test_38_reasoning_is_shown_apart_and_never_sent_back(ip, emu: Emulator) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"{SPEECH} -m qwen3.8-omni-flash", "What is said?")
    assert answer.reasoning.startswith("Emulated reasoning from qwen3.8-omni-flash")
    assert answer.text.startswith("Emulated answer from qwen3.8-omni-flash")
    assert "reasoning" not in answer.text.lower()
    # the block above the answer: reserved first (an accordion while it streams), then a
    # static collapsed block holding the reasoning as escaped text
    kinds = [
        "thinking" if "💭 thinking…" in o.data.get("text/plain", "")
        else "thought" if "💭 thought (" in o.data.get("text/plain", "")
        else o.metadata.get("qaudio", {}).get("status")
        for o in cap.outputs
    ]  # fmt: skip
    assert kinds.index("thinking") < kinds.index("streaming") < kinds.index("thought")
    (settled,) = [o for o in cap.outputs if "💭 thought (" in o.data.get("text/plain", "")]
    assert WIDGET in settled.data  # the same accordion, published again when complete
    html = settled.data["text/html"]  # ... with a static fallback where widgets cannot render
    assert "<details" in html and "<details open" not in html  # collapsed
    assert "💭 thought (" in html and "Emulated reasoning" in html
    assert "Emulated reasoning" not in _answer_updates(cap.outputs)[-1].data["text/html"]
    # the next request's history carries the answer's text only
    ip.run_cell_magic("qaudio", "-m qwen3.8-omni-flash", "And then?")
    history = emu.chat_requests()[-1].json["messages"]
    assistant = [m for m in history if m["role"] == "assistant"]
    assert assistant == [{"role": "assistant", "content": answer.text}]
    assert "Emulated reasoning" not in str(history)


def test_reasoning_does_not_hold_back_the_answers_first_text(ip, emu: Emulator) -> None:
    """The answer display shows its first piece as soon as it arrives: the reasoning block
    has its own display and pace, so the first answer update holds one piece only."""
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"{SPEECH} -m qwen3.8-omni-flash", "What?")
    with_text = [o for o in _answer_updates(cap.outputs) if not o.data["text/plain"].endswith("…")]
    first = with_text[0].data["text/plain"].splitlines()[-1]
    assert first == answer.text.split()[0]  # "Emulated": the first piece, alone


def test_3_flash_thinks_on_request_and_the_cache_keeps_reasoning_apart(
    ip, emu: Emulator, tmp_path: Path
) -> None:
    ip.run_line_magic("config", f"QAudioMagic.cache_dir = '{tmp_path}'")
    line = f"{SPEECH} -m qwen3-omni-flash -p enable_thinking=true --cache on"
    first = ip.run_cell_magic("qaudio", line, "Why?")
    assert first.reasoning and "Emulated reasoning" not in first.text
    again = ip.run_cell_magic("qaudio", line + " --new", "Why?")
    assert again.cached and (again.text, again.reasoning) == (first.text, first.reasoning)
    assert len(emu.chat_requests()) == 1


def test_no_stream_still_separates_reasoning(ip, emu: Emulator) -> None:
    answer = ip.run_cell_magic("qaudio", f"{SPEECH} -m qwen3.8-omni-flash --no-stream", "Q")
    assert answer.reasoning and "reasoning" not in answer.text.lower()
    assert emu.chat_requests()[0].json["stream"] is True  # 3.8 is always streamed


# ---------------------------------------------------------------------- spoken answers
def test_a_spoken_answer_arrives_as_a_playable_24_khz_clip(ip, emu: Emulator) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"{SPEECH} -m qwen3.5-omni-plus --speak", "Say hi")
    body = emu.chat_requests()[0].json
    assert body["modalities"] == ["text", "audio"]
    assert body["audio"] == {"voice": "Tina", "format": "wav"}
    clip = answer.audio
    assert clip is not None and clip.info is not None
    assert (clip.info.sample_rate, clip.info.channels) == (24_000, 1)
    samples = clip.decode()
    assert clip.duration and clip.duration > 1.0 and abs(samples).max() > 0.05
    assert "spoken" in answer.footer()
    # a player under the answer (never autoplaying: test_player checks the front end)
    players = [o for o in cap.outputs if WIDGET in o.data]
    assert "▶ spoken answer (Tina)" in players[-1].data["text/plain"]
    # no audio bytes in what a saved notebook keeps: outputs are small, text only
    for output in cap.outputs:
        for value in output.data.values():
            text = value if isinstance(value, str) else str(value)
            assert len(text) < 50_000 and "base64" not in text
    # the next turn sends the answer back as text only
    ip.run_cell_magic("qaudio", "-m qwen3.5-omni-plus", "Again, in writing?")
    (assistant,) = [m for m in emu.chat_requests()[-1].json["messages"] if m["role"] == "assistant"]
    assert assistant == {"role": "assistant", "content": answer.text}
    assert "modalities" in emu.chat_requests()[-1].json  # text only again
    assert emu.chat_requests()[-1].json["modalities"] == ["text"]


def test_voices_are_checked_per_model_family(ip, emu: Emulator) -> None:
    answer = ip.run_cell_magic("qaudio", f"{TONE} -m qwen3-omni-flash --speak Ethan", "Hi")
    assert emu.chat_requests()[-1].json["audio"]["voice"] == "Ethan"
    assert answer.audio is not None
    with pytest.raises(UsageError, match=r"'Tina' is not a voice of qwen3-omni-flash \(voices: "):
        ip.run_cell_magic("qaudio", f"{TONE} -m qwen3-omni-flash --speak Tina", "Hi")
    with pytest.raises(UsageError, match=r"'Serena' is not a voice of qwen3-omni-flash-2025-09-15"):
        ip.run_cell_magic("qaudio", f"{TONE} -m qwen3-omni-flash-2025-09-15 --speak Serena", "Hi")
    unsure = ip.run_cell_magic("qaudio", f"{TONE} -m qwen3.5-omni-flash --speak Cherry", "Hi")
    assert any("'Cherry' is not in the documented list" in n for n in unsure.notes)


def test_speaking_is_refused_in_one_line_where_it_cannot_be(ip, emu: Emulator) -> None:
    cases = {
        "-m qwen3.8-omni-flash --speak": "qwen3.8-omni-flash answers in text only",
        "-m qwen3-omni-flash --speak -p enable_thinking=true": "cannot speak while thinking",
        "--caption --speak": "answers in text only",
        "qwen-audio-turbo-latest --speak": "answers in text only",
    }
    for line, message in cases.items():
        line = line.replace("qwen-audio-turbo-latest", "-m qwen-audio-turbo-latest")
        with pytest.raises(UsageError, match=message) as err:
            ip.run_cell_magic("qaudio", f"{TONE} {line}", "Q")
        assert "\n" not in str(err.value)
    assert emu.requests == []


# ---------------------------------------------------------------------- captioner, ASR
def test_caption_sends_the_clip_alone_and_says_so(ip, emu: Emulator) -> None:
    answer = ip.run_cell_magic("qaudio", f"{TONE} --caption", "Is it a dog?")
    (request,) = emu.chat_requests()
    assert request.json["model"] == "qwen3-omni-30b-a3b-captioner"
    assert _contents(request) == [["user:input_audio"]]
    assert any('"Is it a dog?" was not sent' in n for n in answer.notes)
    with pytest.raises(UsageError, match="--caption needs a model that does it"):
        ip.run_cell_magic("qaudio", f"{TONE} --caption -m qwen3.5-omni-plus", "Q")


def test_asr_returns_language_and_emotion(ip, emu: Emulator) -> None:
    answer = ip.run_cell_magic("qaudio", f"{SPEECH} --transcribe", "ignored")
    assert (answer.language, answer.emotion) == ("en", "neutral")
    assert "language en · emotion neutral" in answer.footer()
    assert any('"ignored" was not sent' in n for n in answer.notes)
    forced = ip.run_cell_magic("qaudio", f"{SPEECH} --transcribe -p language=zh --new", "x")
    assert forced.language == "zh"
    assert forced.metadata()["language"] == "zh"


def test_asr_over_5_minutes_says_how_to_hear_it_all(ip, emu: Emulator, tmp_path: Path) -> None:
    six = write_long_wav(tmp_path / "six_minutes.wav", 360, rate=8_000)
    answer = ip.run_cell_magic("qaudio", f"{six} --transcribe", "x")
    (request,) = [r for r in emu.requests if r.path == GENERATION]
    assert request.audio[0].duration == 300.0
    assert any("only 300 s" in n for n in answer.notes)
    assert any(
        "--windows 300" in n and "-m qwen3.5-omni-plus hears up to 3 h" in n for n in answer.notes
    )


# ---------------------------------------------------------------------- registry, regions
def test_models_table_shows_the_current_models_escaped(ip) -> None:
    ip.run_line_magic("config", "QAudioMagic.model = 'openai:<b>x</b>'")
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "models")
    html_table = cap.outputs[0].data["text/html"]
    assert "<b>x</b>" not in html_table and "&lt;b&gt;x&lt;/b&gt;" in html_table
    rows = {line.split()[0]: line for line in cap.outputs[0].data["text/plain"].splitlines()[3:]}
    assert "3 h, 2 GB, 7 tok/s" in rows["qwen3.5-omni-plus"]
    assert "any (≤250 inline)" in rows["qwen3.5-omni-plus"]
    assert "262,144†" in rows["qwen3.5-omni-plus"]  # third-party figure: UNVERIFIED
    assert "thinks" in rows["qwen3.8-omni-flash"] and "1,000,000" in rows["qwen3.8-omni-flash"]
    assert "transcribes (language, emotion)" in rows["qwen3-asr-flash"]
    assert "billed per s" in rows["qwen3-asr-flash"]
    assert "no question" in rows["qwen3-omni-30b-a3b-captioner"]
    assert "Frankfurt" in rows["qwen3.8-omni-flash"]
    assert "DashScope keys are per region" in cap.outputs[0].data["text/plain"]


def test_unknown_names_fall_back_to_their_family_and_say_so(ip, emu: Emulator) -> None:
    answer = ip.run_cell_magic("qaudio", f"{SPEECH} {TONE} -m qwen3.5-omni-plus-2027-01-01", "Q")
    assert any("limits of its family (qwen3.5-omni-plus) assumed" in n for n in answer.notes)
    (request,) = emu.chat_requests()
    assert len(request.json["messages"]) == 1  # both clips in one message, as 3.5 takes


def test_regions_and_workspaces_choose_the_host(ip, monkeypatch) -> None:
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL")
    session = ip.run_line_magic  # the magic's %config is what a user types
    session("config", "QAudioMagic.region = 'ap-southeast-1'")
    from qaudio_magic.session import get_session

    assert get_session().backend("qwen3-asr-flash").base_url == (
        "https://dashscope-intl.aliyuncs.com/api/v1"
    )
    session("config", "QAudioMagic.workspace = 'llm-ws123'")
    assert get_session().backend("qwen3.5-omni-plus").base_url == (
        "https://llm-ws123.ap-southeast-1.maas.aliyuncs.com/compatible-mode/v1"
    )
    session("config", "QAudioMagic.workspace = ''")
    monkeypatch.setenv("DASHSCOPE_WORKSPACE_ID", "llm-env9")
    session("config", "QAudioMagic.region = 'eu-central-1'")
    assert get_session().backend("qwen3.8-omni-flash").base_url == (
        "https://llm-env9.eu-central-1.maas.aliyuncs.com/compatible-mode/v1"
    )
    session("config", "QAudioMagic.region = 'intl'")  # the old names stay
    assert get_session().settings.dashscope_url().startswith("https://llm-env9.ap-southeast-1.")
    with pytest.raises(ConfigError, match="region must be one of cn, intl, cn-beijing"):
        check("region", "mars")
    with pytest.raises(ConfigError, match="host name label"):
        check("workspace", "a.b/c")


def test_a_60_minute_dry_run_shows_the_upload_and_7_tokens_per_second(ip, emu, hour) -> None:
    plan = ip.run_cell_magic("qaudio", f"{hour} -m qwen3.5-omni-plus --dry-run", "Summarise.")
    text = str(plan)
    assert "25200" in text and "temporary upload" in text
    assert emu.requests == []  # nothing sent


def test_the_terminal_prints_reasoning_apart_from_the_answer() -> None:
    with capture_output() as cap:
        view = AnswerView([], question="Q", mode="plain", thinking=True)
        view.start()
        view.add_reasoning("Short clip; ")
        view.add_reasoning("a greeting.")
        view.add("It says ")
        view.add("hello.")
        view.finish("model · 1.0 s", {})
    assert (
        cap.stdout
        == "💬 follow-up\n💭 Short clip; a greeting.\n\nIt says hello.\n-- model · 1.0 s\n"
    )


def test_a_vllm_server_without_a_reasoning_parser_gets_its_think_tags_taken_out(
    ip, emu: Emulator
) -> None:
    """vLLM serving a Thinking model without --reasoning-parser writes <think>…</think>
    inline in content (CURRENT-MODELS §11.13): it becomes the answer's reasoning."""
    ip.run_line_magic("config", f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'")
    emu.reply_with("<think>The clip is short; a greeting.</think>\n\nIt says hello.")
    answer = ip.run_cell_magic(
        "qaudio", f"{SPEECH} -m openai:Qwen/Qwen3-Omni-30B-A3B-Thinking", "Q"
    )
    assert answer.text == "It says hello."
    assert answer.reasoning == "The clip is short; a greeting."


def test_a_long_file_by_url_is_checked_against_the_models_url_limit(
    ip, emu: Emulator, file_server, hour: Path
) -> None:
    """Where clips cannot be uploaded, local audio is held to the inline budget — but a URL
    is fetched by the service, so a 57.6 MB file by URL still reaches Qwen3.5-Omni whole."""
    base, folder = file_server
    (folder / hour.name).write_bytes(hour.read_bytes())
    ip.run_line_magic("config", "QAudioMagic.upload = 'never'")
    answer = ip.run_cell_magic("qaudio", f"{base}/{hour.name} -m qwen3.5-omni-plus", "Sum up.")
    (request,) = emu.chat_requests()
    assert request.json["messages"][0]["content"][0]["input_audio"]["data"].endswith(hour.name)
    assert request.audio[0].duration == 3600.0 and "3600.00 s" in answer.text
    with pytest.raises(UsageError, match="over the 100 MB the service fetches"):
        big = folder / "big.wav"
        with big.open("wb") as out:
            out.truncate(101_000_000)  # a HEAD check is all that happens: no decode
        ip.run_cell_magic("qaudio", f"{base}/big.wav -m qwen3-omni-flash", "Q")


def test_export_keeps_reasoning_apart_from_the_answer(ip, emu: Emulator, tmp_path: Path) -> None:
    import json

    answer = ip.run_cell_magic("qaudio", f"{SPEECH} -m qwen3.8-omni-flash --new", "What?")
    ip.run_line_magic("qaudio", f"export {tmp_path / 'conv.json'}")
    (turn,) = json.loads((tmp_path / "conv.json").read_text())["turns"]
    assert turn["answer"] == answer.text and turn["reasoning"] == answer.reasoning
    assert "Emulated reasoning" not in turn["answer"]
