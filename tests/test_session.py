"""Settings declared once, the session's keys and emulator, and `%config` made from them."""

from __future__ import annotations

from dataclasses import fields

import pytest
from IPython.utils.capture import capture_output

from qaudio_magic._secret import Secret
from qaudio_magic.errors import ConfigError
from qaudio_magic.magic import QAudioMagic
from qaudio_magic.session import Session
from qaudio_magic.settings import MAX_CONCURRENCY, Settings, check, help_of

from .conftest import TEST_KEY


def test_every_setting_is_a_trait_with_the_same_default_and_help() -> None:
    defaults = Settings()
    traits = QAudioMagic.class_traits(config=True)
    assert set(traits) == {f.name for f in fields(Settings)}
    for f in fields(Settings):
        trait = traits[f.name]
        assert trait.default() == getattr(defaults, f.name), f.name
        assert trait.help == help_of(f.name)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("concurrency", 0, "concurrency must be between 1 and 64, got 0"),
        ("concurrency", MAX_CONCURRENCY + 1, "concurrency must be between 1 and 64, got 65"),
        ("rate_limit", "fast", "rate_limit must be auto, off, RPM or RPM/TPM"),
        ("rate_limit", "60/-1", "rate_limit must be auto, off, RPM or RPM/TPM"),
        ("cache", "sometimes", "cache must be one of auto, on, off, refresh, replay"),
        ("region", "mars", "region must be one of cn, intl"),
        ("model", "   ", "model cannot be empty"),
        ("retries", "3", "retries must be a int, got '3'"),
        ("stream", 1, "stream must be a bool, got 1"),
        ("headers", {"Authorization": "Bearer x"}, "not in headers"),
        ("total_timeout", -1.0, "total_timeout must be at least 0.001, got -1.0"),
        ("nonsense", 1, "unknown setting 'nonsense'"),
    ],
)
def test_settings_refuse_wrong_values_in_one_line(name: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(name, value)
    assert message in str(err.value) and "\n" not in str(err.value)
    if name != "nonsense":
        with pytest.raises(ConfigError):
            Settings(**{name: value})


def test_settings_normalise_what_they_can() -> None:
    s = Settings(model=" qwen3-omni-flash ", cache="ON", region="INTL", timeout=5)
    assert (s.model, s.cache, s.region, s.timeout) == ("qwen3-omni-flash", "on", "intl", 5.0)
    assert isinstance(s.timeout, float)


def test_config_validates_through_the_same_check(ip, caplog) -> None:
    ip.run_line_magic("config", "QAudioMagic.concurrency = 3")
    magic = next(c for c in ip.configurables if isinstance(c, QAudioMagic))
    assert magic.session.settings.concurrency == 3
    ip.run_line_magic("config", "QAudioMagic.concurrency = 100")  # IPython logs the refusal
    assert "concurrency must be between 1 and 64, got 100" in caplog.text
    assert magic.concurrency == 3 and magic.session.settings.concurrency == 3
    ip.run_line_magic("config", "QAudioMagic.cache = 'Replay'")
    assert magic.session.settings.cache == "replay"


def test_config_listing_shows_each_settings_whole_help(ip) -> None:
    with capture_output() as cap:
        ip.run_line_magic("config", "QAudioMagic")
    listing = " ".join(cap.stdout.split())
    for f in fields(Settings):
        assert f"QAudioMagic.{f.name}=" in listing
        assert " ".join(help_of(f.name).split()) in listing, f.name
    assert TEST_KEY not in cap.stdout


def test_the_emulator_takes_over_and_gives_back_keys_and_addresses(monkeypatch) -> None:
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    session = Session(Settings(openai_base_url="http://vllm.example:8000/v1"))
    session.set_key("sk-real-dashscope")
    session.set_openai_key("sk-real-openai")
    url = session.start_emulator()
    try:
        assert session.settings.base_url == url == session.emulator.base_url
        assert session.settings.openai_base_url == session.emulator.openai_base_url
        for key in (session.api_key(), session.openai_key()):
            assert isinstance(key, Secret) and "real" not in key.reveal()
        assert session.start_emulator() == url  # a second start keeps the same emulator
    finally:
        session.stop_emulator()
    assert session.emulator is None
    assert session.api_key().reveal() == "sk-real-dashscope"
    assert session.openai_key().reveal() == "sk-real-openai"
    assert session.settings.base_url == ""
    assert session.settings.openai_base_url == "http://vllm.example:8000/v1"
    assert session.settings.dashscope_url() == "https://dashscope.aliyuncs.com/api/v1"
    session.stop_emulator()  # stopping twice is harmless
    session.close()


def test_emulator_subcommand_mirrors_the_addresses_into_config(ip) -> None:
    magic = next(c for c in ip.configurables if isinstance(c, QAudioMagic))
    with capture_output():
        ip.run_line_magic("qaudio", "emulator on")
    try:
        assert magic.base_url == magic.session.emulator.base_url
        assert magic.openai_base_url == magic.session.emulator.openai_base_url
    finally:
        with capture_output():
            ip.run_line_magic("qaudio", "emulator off")
    assert magic.base_url == "" and magic.session.emulator is None
