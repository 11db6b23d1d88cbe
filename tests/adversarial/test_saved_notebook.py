"""Secrets in a saved notebook: a real kernel (nbclient) asks a server that echoes the key,
once through ``%%qaudio`` and once through ``ask_audio()`` under ``%xmode Verbose`` (whose
traceback prints the variables of every frame: ``raw``, ``event``, ``response.headers``).
The saved ``.ipynb`` must hold the echoes, scrubbed, and no key nor a long prefix of it."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

from qaudio_magic._secret import MIN_RUN

from ..conftest import ROOT, TEST_KEY
from .cases import GENERATION
from .conftest import CLIP
from .server import HostileServer
from .test_secrets_echo import echo_answer, echo_error, echo_midstream_error


def test_the_saved_notebook_holds_no_key(hostile: HostileServer) -> None:
    hostile.route(GENERATION, echo_answer)
    hostile.route("/bad/api/v1" + GENERATION, echo_error)
    hostile.route("/midstream/api/v1" + GENERATION, echo_midstream_error)
    cells = [
        "%load_ext qaudio_magic",
        f"%config QAudioMagic.base_url = '{hostile.base_url}'\n"
        "%config QAudioMagic.upload = 'never'\n%config QAudioMagic.retries = 0",
        f"%%qaudio {CLIP}\nWhat is my key?",
        "%xmode Verbose",
        "from qaudio_magic import ask_audio\n"
        f"%config QAudioMagic.base_url = '{hostile.url}/bad/api/v1'\n"
        f"ask_audio('{CLIP}', 'Fail from Python')",
        f"%config QAudioMagic.base_url = '{hostile.url}/midstream/api/v1'\n"
        f"ask_audio('{CLIP}', 'Fail mid-stream')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DASHSCOPE_API_KEY"] = TEST_KEY
    NotebookClient(
        nb, timeout=120, kernel_name="python3", store_widget_state=False, allow_errors=True
    ).execute(env=env)
    saved = nbformat.writes(nb)

    assert "Your key is ***" in saved  # the echoed answer, scrubbed
    tracebacks = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(tracebacks) == 2 and all(o.ename == "APIError" for o in tracebacks)
    assert "InvalidParameter" in saved and "DataInspectionFailed" in saved
    assert TEST_KEY not in saved and TEST_KEY[:MIN_RUN] not in saved
