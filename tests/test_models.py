"""The model registry against its source of truth, ``shared/protocol/CURRENT-MODELS.md``.

The doc's tables are read where they are regular enough (§11.1 matrix, §11.3.2 limits,
§11.4.3 token rates, §11.6 voices, §11.10 context windows and rate limits), so a change
to the doc that the registry does not follow fails here. Figures the doc marks
UNVERIFIED must be named in the spec's ``unverified`` set.
"""

from __future__ import annotations

import re

import pytest

from qaudio_magic.backends.base import audio_tokens
from qaudio_magic.models import MODELS, ModelSpec, Price, lookup
from qaudio_magic.regions import RegionError, api_base, key_hint, region_of, resolve_region

from .conftest import ROOT

DOC = ROOT.parent / "shared" / "protocol" / "CURRENT-MODELS.md"

# The doc's column/row names → the registry names they cover.
FAMILIES = {
    "qwen3.5-omni-plus/-flash": [
        "qwen3.5-omni-plus",
        "qwen3.5-omni-plus-2026-03-15",
        "qwen3.5-omni-flash",
        "qwen3.5-omni-flash-2026-03-15",
    ],
    "qwen3-omni-flash": [
        "qwen3-omni-flash",
        "qwen3-omni-flash-2025-12-01",
        "qwen3-omni-flash-2025-09-15",
    ],
    "qwen-omni-turbo": ["qwen-omni-turbo", "qwen-omni-turbo-latest"],
    "captioner": ["qwen3-omni-30b-a3b-captioner"],
    "qwen3-asr-flash": ["qwen3-asr-flash", "qwen3-asr-flash-2026-02-10", "qwen3-asr-flash-us"],
    "qwen3.8-omni-flash": ["qwen3.8-omni-flash"],
}
REGION_NAMES = {
    "Beijing": "cn-beijing",
    "Singapore": "ap-southeast-1",
    "Hong Kong": "cn-hongkong",
    "Tokyo": "ap-northeast-1",
    "Frankfurt": "eu-central-1",
    "Virginia": "us-east-1",
    "US": "us-east-1",
}


def _doc() -> str:
    if not DOC.exists():
        pytest.skip(f"{DOC} is not here (a clone without ../shared)")
    return DOC.read_text(encoding="utf-8")


def _table(text: str, header_start: str) -> list[list[str]]:
    """The rows (cells stripped of markdown emphasis) of the table whose header row
    starts with ``header_start``; the header row first."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if set(line.replace("|", "").strip()) <= {"-"}:
            continue  # the separator row
        cells = [c.strip().replace("**", "").replace("`", "") for c in line.strip("|").split("|")]
        rows.append(cells)
    return rows


def _seconds(cell: str) -> float | None:
    m = re.search(r"([\d.]+)\s*(h|min|s)\b", cell)
    if m is None:
        return None
    return float(m.group(1)) * {"h": 3600, "min": 60, "s": 1}[m.group(2)]


def _bytes(cell: str) -> int | None:
    m = re.search(r"([\d.]+)\s*(GB|MB)", cell)
    if m is None:
        return None
    return int(float(m.group(1)) * {"GB": 10**9, "MB": 10**6}[m.group(2)])


def _int(cell: str) -> int:
    return int(re.search(r"[\d,]+", cell).group(0).replace(",", ""))  # type: ignore[union-attr]


def _specs(column: str) -> list[ModelSpec]:
    return [MODELS[name] for name in FAMILIES[column]]


def test_per_file_limits_match_the_doc() -> None:
    rows = _table(_doc(), "| limit |")
    columns = rows[0][1:]
    by_row = {row[0]: row[1:] for row in rows[1:]}
    assert set(columns) == set(FAMILIES)
    for column, duration, size, files in zip(
        columns,
        by_row["max duration per file"],
        by_row["max size by URL"],
        by_row["audio files per request"],
        strict=True,
    ):
        for spec in _specs(column):
            lim = spec.limits
            if "UNVERIFIED" in duration:
                assert "max_audio_seconds" in spec.unverified, spec.name
            else:
                assert lim.max_audio_seconds == _seconds(duration), spec.name
            if "UNVERIFIED" in size:
                assert "max_audio_bytes" in spec.unverified, spec.name
            else:
                assert lim.max_audio_bytes == _bytes(size), spec.name
            if "UNVERIFIED" in files:
                assert "clips_per_message" in spec.unverified, spec.name
            elif "2048" in files:  # "up to 2048 by URL / 250 by base64"
                assert (spec.clips_per_request, spec.inline_clips_per_request) == (2048, 250)
                assert spec.clips_per_message is None  # any mix in one message (§11.3.3)
            else:
                assert spec.clips_per_request == _int(files) == spec.clips_per_message == 1


def test_token_rates_match_the_doc() -> None:
    rows = _table(_doc(), "| model | input audio | output audio |")[1:]
    names = {
        "qwen3.5-omni-*": FAMILIES["qwen3.5-omni-plus/-flash"],
        "qwen3-omni-flash": FAMILIES["qwen3-omni-flash"],
        "qwen3-omni-30b-a3b-captioner": FAMILIES["captioner"],
        "qwen-omni-turbo": FAMILIES["qwen-omni-turbo"],
        "qwen3.8-omni-flash": FAMILIES["qwen3.8-omni-flash"],
        "qwen3-asr-flash, filetrans, qwen-audio-3.x-asr": [
            *FAMILIES["qwen3-asr-flash"],
            "qwen3-asr-flash-filetrans",
            "qwen-audio-3.0-asr-flash",
            "qwen-audio-3.1-asr-flash",
        ],
    }
    seen = set()
    for model, rate_in, rate_out, *_ in rows:
        if model not in names:
            continue  # vLLM's open model: not a registry entry
        seen.add(model)
        for name in names[model]:
            spec = MODELS[name]
            if "UNVERIFIED" in rate_in:
                assert "audio_tokens_per_second" in spec.unverified
            elif "per second" in rate_in:
                assert spec.per_second_billing and spec.limits.audio_tokens_per_second == 0
            else:
                expected = float(re.search(r"[\d.]+", rate_in).group(0))  # type: ignore[union-attr]
                assert spec.limits.audio_tokens_per_second == expected, name
                # "< 1 s counts as 1 s"
                assert spec.limits.min_audio_tokens == -(-expected // 1)
            if "tokens/s" in rate_out:
                out = float(re.search(r"[\d.]+", rate_out).group(0))  # type: ignore[union-attr]
                assert spec.audio_out_tokens_per_second == out and spec.speaks, name
            else:
                assert spec.audio_out_tokens_per_second is None and not spec.speaks, name
    assert seen == set(names)


def test_context_windows_match_the_doc() -> None:
    rows = _table(_doc(), "| model | context | max input | max output |")[1:]
    rows_by = {row[0]: row[1:4] for row in rows}
    expected = {
        "qwen3.8-omni-flash": ("qwen3.8-omni-flash", 1),  # the thinking max input (default)
        "qwen3-omni-flash, non-thinking": ("qwen3-omni-flash", 0),
        "qwen-omni-turbo": ("qwen-omni-turbo", 0),
        "qwen3-omni-30b-a3b-captioner": ("qwen3-omni-30b-a3b-captioner", 0),
    }
    for row, (name, which) in expected.items():
        context, max_in, max_out = rows_by[row]
        lim = MODELS[name].limits
        ins = [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]+", max_in)]
        assert (lim.context_tokens, lim.max_input_tokens, lim.max_output_tokens) == (
            _int(context),
            ins[which],
            _int(max_out),
        ), name
    assert "not published" in rows_by["qwen3.5-omni-plus / -flash (+ -2026-03-15)"][0]
    assert "UNVERIFIED" in rows_by["qwen3-asr-flash"][0]
    for name in (*FAMILIES["qwen3.5-omni-plus/-flash"], *FAMILIES["qwen3-asr-flash"]):
        assert {"context_tokens", "max_input_tokens"} <= MODELS[name].unverified, name


def test_matrix_regions_thinking_and_streaming_match_the_doc() -> None:
    rows = _table(_doc(), "| model id(s) |")[1:]
    for ids, route, regions, stream, _audio_in, audio_out, thinking, _rate in rows:
        names = [n for n in re.findall(r"qwen[\w.-]*", ids) if n in MODELS]
        assert names, ids
        for name in names:
            spec = MODELS[name]
            if name == "qwen3-asr-flash-us":
                assert spec.regions == ("us-east-1",) and spec.routes == ("dashscope",)
            else:
                doc_regions = {
                    REGION_NAMES[w] for w in REGION_NAMES if w in regions.split("(")[0]
                } - ({"us-east-1"} if "asr" in name else set())
                assert set(spec.regions) == doc_regions, name
            if "compat only" in route:
                assert spec.routes == ("dashscope-compatible",), name
            elif "compat and native" in route and name != "qwen3-asr-flash-us":
                assert set(spec.routes) == {"dashscope", "dashscope-compatible"}, name
            if stream.startswith("required"):
                assert spec.stream_only, name
            elif stream == "UNVERIFIED":  # the safe choice: always stream
                assert spec.stream_only and "stream_only" in spec.unverified, name
            if audio_out.startswith("no"):
                assert not spec.speaks, name
            elif spec.supported:
                assert spec.speaks and spec.default_voice in spec.voices, name
            expected_thinking = (
                "default"
                if "on by default" in thinking
                else "optional"
                if "hybrid" in thinking
                else "never"
            )
            assert spec.thinking == expected_thinking, name


def test_voices_match_the_doc() -> None:
    rows = {r[0]: r[1] for r in _table(_doc(), "| model | voices | source |")[1:]}
    listed = rows["qwen3-omni-flash-2025-09-15 (and the alias before 12-01)"]
    seventeen = [v.strip() for v in listed.split(":", 1)[1].split(",")]
    assert list(MODELS["qwen3-omni-flash-2025-09-15"].voices) == seventeen
    assert "49 voices" in rows["qwen3-omni-flash-2025-12-01 (= qwen3-omni-flash)"]
    for name in ("qwen3-omni-flash", "qwen3-omni-flash-2025-12-01"):
        voices = MODELS[name].voices
        assert len(voices) == len(set(voices)) == 49 and set(seventeen) <= set(voices)
    turbo = [v.strip() for v in rows["qwen-omni-turbo"].split(",")]
    assert list(MODELS["qwen-omni-turbo"].voices) == turbo
    q35 = MODELS["qwen3.5-omni-plus"]
    assert q35.voices == ("Tina",) and not q35.voices_complete and "voices" in q35.unverified


def test_rate_limits_and_prices_match_the_doc() -> None:
    text = _doc()
    assert "60 RPM / 100,000 TPM each" in text
    for family in ("qwen3.5-omni-plus/-flash", "qwen3-omni-flash", "qwen-omni-turbo", "captioner"):
        for spec in _specs(family):
            assert spec.rate_limit is not None, spec.name
            assert (spec.rate_limit.rpm, spec.rate_limit.tpm) == (60, 100_000), spec.name
            assert spec.rate_limit.source == "RATE"
    assert MODELS["qwen-audio-3.0-asr-flash-filetrans"].rate_limit.rpm == 600  # type: ignore[union-attr]
    assert MODELS["qwen3.8-omni-flash"].rate_limit is None  # not documented: unknown

    prices = {r[0]: r[1] for r in _table(text, "| model | price | free quota |")[1:]}
    plus_bj = MODELS["qwen3.5-omni-plus"].price("cn-beijing")
    assert plus_bj is not None and not plus_bj.verified and plus_bj.currency == "CNY"
    assert "text in 7, audio in 53, text out 40, audio out 213" in prices["qwen3.5-omni-plus"]
    assert (plus_bj.text_in, plus_bj.audio_in, plus_bj.text_out, plus_bj.audio_out) == (
        7,
        53,
        40,
        213,
    )
    flash_sg = MODELS["qwen3.5-omni-flash"].price("ap-southeast-1")
    assert "USD 0.4 / 3 / 2.2 / 11.9" in prices["qwen3.5-omni-flash"]
    assert flash_sg is not None
    assert (flash_sg.text_in, flash_sg.audio_in, flash_sg.text_out, flash_sg.audio_out) == (
        0.4,
        3,
        2.2,
        11.9,
    )
    asr = MODELS["qwen3-asr-flash"]
    assert "$0.000035/s Singapore; $0.000032/s Beijing" in prices["qwen3-asr-flash"]
    assert asr.price("ap-southeast-1").per_second == 0.000035  # type: ignore[union-attr]
    assert asr.price("cn-beijing").per_second == 0.000032  # type: ignore[union-attr]
    assert "not captured" in prices["qwen3-omni-flash"]
    assert MODELS["qwen3-omni-flash"].price("cn-beijing") is None  # unknown, not free
    for spec in MODELS.values():
        for price in spec.prices:
            assert price.source and re.fullmatch(r"\d{4}-\d\d-\d\d", price.checked), spec.name


def test_price_estimates_say_unknown_rather_than_guess() -> None:
    plus = MODELS["qwen3.5-omni-plus"].price("ap-southeast-1")
    assert plus is not None
    # an hour at 7 tokens/s, a 20-token question, a 300-token answer
    cost = plus.estimate(audio_in=25_200, text_in=20, text_out=300)
    assert cost == pytest.approx(25_200 * 11 / 1e6 + 20 * 1.4 / 1e6 + 300 * 8.3 / 1e6)
    q38 = MODELS["qwen3.8-omni-flash"].price("ap-southeast-1")
    assert q38 is not None and q38.estimate(text_in=100, text_out=100) is not None
    assert q38.estimate(audio_in=1_000) is None  # its audio-input rate is UNVERIFIED
    asr = MODELS["qwen3-asr-flash"].price("cn-beijing")
    assert asr is not None and asr.estimate(seconds=59.2) == pytest.approx(60 * 0.000032)
    assert Price("cn-beijing", "USD").estimate() == 0.0


def test_a_long_hour_is_counted_at_the_models_rate() -> None:
    hour = 3600.0
    q35 = lookup("qwen3.5-omni-plus").limits
    assert q35.max_audio_seconds is not None and q35.max_audio_seconds >= hour
    assert audio_tokens(hour, q35) == 25_200  # 7 tokens/s, nothing cut
    assert audio_tokens(hour, lookup("qwen3-omni-flash").limits) == 15_000  # cut at 20 min
    assert audio_tokens(0.3, q35) == 7  # < 1 s counts as 1 s


@pytest.mark.parametrize(
    ("name", "family_of"),
    [
        ("qwen3.5-omni-plus-2026-09-01", "qwen3.5-omni-plus"),
        ("qwen3.5-omni-flash-2026-09-01", "qwen3.5-omni-flash"),
        ("qwen3.5-omni-max", "qwen3.5-omni-plus"),
        ("qwen3.8-omni-plus", "qwen3.8-omni-flash"),
        ("qwen3-asr-flash-2026-06-01", "qwen3-asr-flash"),
        ("qwen3-omni-flash-2026-01-01", "qwen3-omni-flash"),
    ],
)
def test_unknown_names_fall_back_to_their_family_and_say_so(name: str, family_of: str) -> None:
    spec, family = lookup(name), MODELS[family_of]
    assert spec.name == name and spec.fallback
    assert spec.limits == family.limits and spec.route == family.route
    assert f"limits of its family ({family_of}) assumed" in spec.note


def test_models_this_package_cannot_call_say_what_to_use() -> None:
    for name in ("qwen3-asr-flash-filetrans", "qwen3.5-omni-plus-realtime", "x-omni-realtime"):
        spec = lookup(name)
        assert not spec.supported and "not supported here" in spec.note, name
    assert "qwen3-asr-flash" in lookup("qwen3-asr-flash-filetrans").note
    assert all(
        s.supported for s in MODELS.values() if s.route in ("dashscope", "dashscope-compatible")
    )


def test_unverified_facts_take_the_safe_side() -> None:
    q38 = MODELS["qwen3.8-omni-flash"]
    assert q38.stream_only  # the stream requirement is UNVERIFIED: always stream
    assert q38.clips_per_message == 1  # several clips in one message: UNVERIFIED
    assert not q38.speaks and q38.thinking == "default"
    q3 = MODELS["qwen3-omni-flash"]
    assert q3.can_speak() and not q3.can_speak(thinking=True)
    capt = MODELS["qwen3-omni-30b-a3b-captioner"]
    assert not capt.takes_text and capt.single_turn and not capt.stream_only
    asr = MODELS["qwen3-asr-flash"]
    assert asr.transcribes and not asr.streams and asr.route == "dashscope"


def test_regions_resolve_ids_aliases_and_workspace_hosts() -> None:
    assert api_base("cn") == "https://dashscope.aliyuncs.com/api/v1"
    assert api_base("intl", api="compatible") == (
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    )
    assert api_base("eu-central-1", "llm-ab12cd") == (
        "https://llm-ab12cd.eu-central-1.maas.aliyuncs.com/api/v1"
    )
    assert api_base("cn-hongkong") == "https://cn-hongkong.dashscope.aliyuncs.com/api/v1"
    assert {resolve_region(r).id for r in ("cn", "INTL", "us-east-1", "ap-northeast-1")} == {
        "cn-beijing",
        "ap-southeast-1",
        "us-east-1",
        "ap-northeast-1",
    }
    with pytest.raises(RegionError, match=r"unknown region 'mars'.*cn-beijing.*intl"):
        resolve_region("mars")
    with pytest.raises(RegionError, match="host name label"):
        api_base("cn", "evil.example.com/x")
    assert region_of("ws1.ap-northeast-1.maas.aliyuncs.com").id == "ap-northeast-1"  # type: ignore[union-attr]
    assert region_of("127.0.0.1:8080") is None
    assert "Singapore" in key_hint("dashscope-intl.aliyuncs.com")
