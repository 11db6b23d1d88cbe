"""The model grid against the emulator: compare() / --compare across routes, per-route
concurrency, long and wide frames, dry runs with estimated cost, scores per model."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pandas as pd
import pytest
from IPython.core.error import UsageError

from qaudio_magic import Grid, compare
from qaudio_magic.answer import Answer, Failure
from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.compat import COMPATIBLE_CHAT, OPENAI_CHAT
from qaudio_magic.emulator.native import GENERATION
from qaudio_magic.errors import AnswerMismatchError, InputError
from qaudio_magic.estimate import BatchPlan
from qaudio_magic.models import lookup
from qaudio_magic.scoring import normalize
from qaudio_magic.session import Session
from qaudio_magic.settings import Settings

from ._synth import make_clips
from .conftest import TEST_KEY

NATIVE, OMNI, VLLM = "qwen-audio-turbo-latest", "qwen3.5-omni-flash", "openai:Qwen/Qwen2-Audio"
MODELS = [NATIVE, OMNI, VLLM]
SPEAKER = {"gender": ["male", "female", "unknown"], "age": int, "dog_barks": bool}


@pytest.fixture(autouse=True)
def _setup(
    session: Session, emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    session.configure(openai_base_url=emu.openai_base_url)


@pytest.fixture
def clips(audio: Path) -> list[Path]:
    return sorted(audio.glob("*.wav"))


def paths(emu: Emulator) -> list[str]:
    return [r.path for r in emu.requests]


def test_compare_three_models_gives_a_grid_with_latency_and_tokens(
    emu: Emulator, clips: list[Path]
) -> None:
    grid = compare(clips, "Describe the clip.", models=MODELS, progress=False)
    assert isinstance(grid, Grid) and grid.models == MODELS and len(grid) == len(clips)
    # each model got each clip, on its own route
    sent = paths(emu)
    assert (sent.count(GENERATION), sent.count(COMPATIBLE_CHAT), sent.count(OPENAI_CHAT)) == (
        len(clips),
        len(clips),
        len(clips),
    )
    assert all(grid[m].requests == len(clips) for m in MODELS)
    long = grid.to_pandas()
    assert len(long) == 3 * len(clips) and set(long["model"]) == set(MODELS)
    assert long["latency"].gt(0).all() and long["output_tokens"].gt(0).all()
    assert long["input_tokens"].notna().all()
    by_model = long.groupby("model")["audio_tokens"].apply(lambda s: s.notna().all())
    assert by_model[NATIVE] and by_model[OMNI] and not by_model[VLLM]  # vLLM: one prompt total
    for model in MODELS:
        for answer in grid[model]:
            assert isinstance(answer, Answer) and answer.text.startswith(
                f"Emulated answer from {model.removeprefix('openai:')}"
            )
    wide = grid.to_pandas("wide")
    assert len(wide) == len(clips)
    for model in MODELS:
        for column in ("answer", "latency", "audio_tokens", "input_tokens", "output_tokens"):
            assert (model, column) in wide.columns
    # what the notebook shows: one column per model, then per-model latency, tokens, cost
    plain = grid._repr_mimebundle_()[0]["text/plain"]
    assert all(m in plain.splitlines()[2] for m in MODELS)
    stats = {s["model"]: s for s in grid.per_model()}
    assert stats[NATIVE]["answered"] == len(clips) and stats[NATIVE]["mean_latency"] > 0
    assert stats[NATIVE]["output_tokens"] == long.query("model == @NATIVE")["output_tokens"].sum()


def test_typed_grid_costs_and_per_model_scores(emu: Emulator, clips: list[Path]) -> None:
    grid = compare(clips, "Who speaks?", models=MODELS, schema=SPEAKER, progress=False)
    long = grid.to_pandas()
    assert long["gender"].dtype == "category" and long["dog_barks"].dtype == "boolean"
    assert list(long.columns[:5]) == ["source", "model", "gender", "age", "dog_barks"]
    assert "response_format" in emu.chat_requests()[-1].json or any(
        "response_format" in r.json for r in emu.requests if r.path == OPENAI_CHAT
    )
    # cost: the registry's price for Qwen3.5-Omni-Flash in Beijing; unknown elsewhere
    omni = long[long["model"] == OMNI].iloc[0]
    price = lookup(OMNI).price("cn-beijing")
    assert price is not None
    expected = price.estimate(
        text_in=int(omni["input_tokens"]),
        audio_in=int(omni["audio_tokens"]),
        text_out=int(omni["output_tokens"]),
    )
    assert omni["cost"] == pytest.approx(expected) and omni["currency"] == "CNY"
    assert long[long["model"] != OMNI]["cost"].isna().all()
    stats = {s["model"]: s for s in grid.per_model()}
    assert str(stats[VLLM]["cost"]) == "unknown" and stats[OMNI]["cost"].known
    # scores side by side: labels equal to one model's answers score 1.0 for it
    truth = long[long["model"] == NATIVE].set_index("source")[["gender", "dog_barks"]]
    table = grid.score(truth).table
    assert list(table.index) == MODELS and table.loc[NATIVE, "accuracy"] == 1.0
    assert table.loc[NATIVE, "clips"] == len(clips)
    assert {"gender_accuracy", "dog_barks_accuracy"} <= set(table.columns)


def test_wer_of_a_grid_is_jiwer_on_normalised_text(emu: Emulator, clips: list[Path]) -> None:
    grid = compare(clips[:2], "Transcribe.", models=[NATIVE, OMNI], progress=False)
    refs = {clips[0].name: "Hello, this is a test.", clips[1].name: "今天天气很好"}
    scores = grid.score(refs, "wer")
    for model in (NATIVE, OMNI):
        hyps = [a.text for a in grid[model]]
        per = scores[model].per_clip
        assert per["unit"].tolist() == ["word", "char"]  # the Chinese reference by character
        assert per["wer"][0] == pytest.approx(
            jiwer.wer(normalize(refs[clips[0].name]), normalize(hyps[0]))
        )
        edits = per["edits"].sum()
        assert scores.table.loc[model, "wer"] == pytest.approx(edits / per["reference_units"].sum())


def test_each_route_keeps_its_own_concurrency(
    session: Session, emu: Emulator, clips: list[Path]
) -> None:
    """Two native models share one lane of 2; the vLLM lane has its own 2."""
    peaks: dict[str, int] = {}
    lock = threading.Lock()
    for model in (NATIVE, VLLM):
        backend = session.backend(model)
        original = backend.stream
        now = [0]

        def stream(request, original=original, now=now, route=backend.route) -> Iterator:  # type: ignore[no-untyped-def]
            with lock:
                now[0] += 1
                peaks[route] = max(peaks.get(route, 0), now[0])
            try:
                yield from original(request)
            finally:
                with lock:
                    now[0] -= 1

        backend.stream = stream  # type: ignore[method-assign]
    emu.add_fault("latency=0.05")
    grid = compare(
        clips * 2,
        "Q",
        models=[NATIVE, "qwen-audio-turbo-2024-12-04", VLLM],
        concurrency=2,
        progress=False,
    )
    assert all(isinstance(r, Answer) for m in grid for r in grid[m])
    assert peaks["dashscope"] <= 2 and peaks["openai"] <= 2


def test_a_grid_is_paced_by_each_models_rate_limit(tmp_path: Path) -> None:
    """The emulator refuses beyond 600 requests and 60,000 tokens a minute per model, per
    second; a grid told that limit is never refused, and the same grid unpaced is."""
    clips = make_clips(tmp_path / "clips", 30)  # 30 requests per model: three seconds' worth
    two = [NATIVE, "qwen-audio-turbo-2024-12-04"]
    with Emulator() as emu:
        refused = {}
        for setting in ("600/60000", "off"):
            emu.set_rate_limit(rpm=600, tpm=60_000, window=1)  # full buckets, count anew
            session = Session(
                Settings(base_url=emu.base_url, rate_limit=setting, cache="off", retries=6)
            )
            session.set_key(TEST_KEY)
            grid = compare(clips, "Q", models=two, session=session, progress=False)
            session.close()
            refused[setting] = emu.rate_limits.refused
            assert isinstance(grid, Grid)
            if setting != "off":
                assert all(isinstance(r, Answer) for m in two for r in grid[m])
                assert sum(grid[m].requests for m in two) == 2 * len(clips)
    assert refused["600/60000"] == 0
    assert refused["off"] > 0  # the limit bites: pacing is what avoided it


def test_compare_magic_dry_run_and_errors(ip, emu: Emulator, audio: Path) -> None:
    ip.run_line_magic("config", f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'")
    ip.user_ns["Speaker"] = SPEAKER
    line = f"{audio}/*.wav --compare {','.join(MODELS)} --schema Speaker"
    plan = ip.run_cell_magic("qaudio", line + " --dry-run", "Who speaks?")
    assert isinstance(plan, BatchPlan) and emu.requests == []
    rows = {r.model: r for r in plan.rows}
    assert [r.requests for r in plan.rows] == [4, 4, 4]
    assert rows[OMNI].cost.known and rows[OMNI].cost.currency == "CNY"
    assert not rows[NATIVE].cost.known and not rows[VLLM].cost.known
    assert rows[VLLM].mechanism == "json_schema" and rows[NATIVE].mechanism == "prompt"
    assert rows[OMNI].audio_tokens < rows[NATIVE].audio_tokens  # 7 vs 25 tokens per second
    shown = plan._repr_mimebundle_()[0]["text/plain"]
    assert "unknown" in shown and "¥" in shown and "(assumed)" in shown
    frame = plan.to_pandas()
    assert frame.set_index("model").loc[NATIVE, "cost"] is None or pd.isna(
        frame.set_index("model").loc[NATIVE, "cost"]
    )
    grid = ip.run_cell_magic("qaudio", line, "Who speaks?")
    calls = emu.generation_requests() + emu.chat_requests()
    assert isinstance(grid, Grid) and grid.schema is not None and len(calls) == 12
    with pytest.raises(UsageError, match="--compare names the models: leave out -m"):
        ip.run_cell_magic("qaudio", line + f" -m {NATIVE}", "Q")
    with pytest.raises(UsageError, match="a model appears twice"):
        ip.run_cell_magic("qaudio", f"{audio}/*.wav --compare {NATIVE},{NATIVE}", "Q")


def test_batch_dry_run_shows_requests_seconds_tokens_and_cost(
    ip, emu: Emulator, audio: Path
) -> None:
    plan = ip.run_cell_magic("qaudio", f"{audio}/*.wav -m {OMNI} --dry-run", "Describe.")
    assert isinstance(plan, BatchPlan) and emu.requests == []
    (row,) = plan.rows
    assert row.requests == 4 and row.audio_seconds == pytest.approx(
        sum(p.stat().st_size > 0 and _seconds(p) for p in sorted(audio.glob("*.wav"))), rel=1e-3
    )
    assert row.cost.known and "¥" in str(plan)


def _seconds(path: Path) -> float:
    import wave

    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_a_failing_model_is_a_column_of_failures_not_a_crashed_grid(
    emu: Emulator, clips: list[Path]
) -> None:
    emu.add_fault(f"status=401;code=InvalidApiKey;path={GENERATION}")
    grid = compare(clips, "Q", models=[NATIVE, OMNI], schema=SPEAKER, progress=False)
    assert all(isinstance(r, Failure) for r in grid[NATIVE])
    assert all(isinstance(r, Answer) for r in grid[OMNI])
    assert NATIVE in grid.stopped  # an account-level error stops that model only
    assert len([r for r in emu.requests if r.path == GENERATION]) < len(clips) + 1
    long = grid.to_pandas()
    assert long[long["model"] == NATIVE]["error"].str.contains("InvalidApiKey").all()


def test_bad_input_sends_nothing(emu: Emulator, audio: Path) -> None:
    with pytest.raises(InputError, match="compare needs at least one model"):
        compare(audio / "speech_en.wav", "Q", models=[])
    with pytest.raises(InputError, match="no files match"):
        compare(str(audio / "*.nothing"), "Q", models=MODELS)
    assert emu.requests == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    from qaudio_magic.backends import local
    from qaudio_magic.backends.tiny_qwen2_audio import save_tiny_qwen2_audio

    yield f"local:{save_tiny_qwen2_audio(tmp_path_factory.mktemp('tiny'))}"
    local.unload_models()
    mp.undo()


def test_a_grid_across_all_four_routes(emu: Emulator, audio: Path, tiny: str) -> None:
    clip = audio / "speech_en.wav"
    models = [*MODELS, tiny]
    grid = compare(clip, "What is said?", models=models, progress=False, max_tokens=8)
    assert all(isinstance(grid[m][0], Answer) for m in models)
    assert grid[tiny][0].usage is not None and grid[tiny][0].usage.output_tokens
    # typed: the random model cannot write JSON: one repair, then a failed cell
    typed = compare(
        clip, "Who?", models=[NATIVE, tiny], schema=SPEAKER, progress=False, max_tokens=8
    )
    assert isinstance(typed[NATIVE][0], Answer)
    failed = typed[tiny][0]
    assert isinstance(failed, Failure) and isinstance(failed.error, AnswerMismatchError)
    assert failed.attempts == 2 and typed[tiny].requests == 2
