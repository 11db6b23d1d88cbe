"""Today's Qwen audio models end to end against the emulator over real HTTP.

Each test types what a user would (``%%qaudio`` cells through the ``ip`` fixture, or
``ask_audio``) and checks what the user sees and what reached the emulator.
"""

from __future__ import annotations

from pathlib import Path

from qaudio_magic.emulator import Emulator

from ._synth import write_long_wav


def test_a_long_clip_to_qwen3_omni_flash_is_no_longer_cut_at_150_s(
    ip, emu: Emulator, tmp_path: Path
) -> None:
    """150 s was the video limit (CURRENT-MODELS §11.3.3); inline audio is held to 7 MB."""
    five = write_long_wav(tmp_path / "five_minutes.wav", 300, rate=16_000)
    answer = ip.run_cell_magic("qaudio", f"{five} -m qwen3-omni-flash", "Summarise.")
    (request,) = emu.chat_requests()
    (received,) = request.audio
    assert received.duration is not None and received.duration == 218.0
    assert any("only 218 s" in note for note in answer.notes)
