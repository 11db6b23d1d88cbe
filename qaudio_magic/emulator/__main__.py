"""``python -m qaudio_magic.emulator``: serve the DashScope-protocol emulator on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import Emulator
from .faults import parse_fault


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qaudio_magic.emulator",
        description="A loopback emulator of DashScope for Qwen-Audio (answers are emulated).",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--key", help="accept only this API key (default: any key)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--token-rate", type=float, default=0.0, help="tokens per second")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="fault knobs, e.g. 'status=429;retry_after=1;rate=0.1' (see faults.py)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    spec = f"latency={args.latency};ttft={args.ttft};token_rate={args.token_rate}"
    fault = parse_fault(";".join([spec, *args.fault]))
    emu = Emulator(args.port, key=args.key, fault=fault, verbose=args.verbose).start()
    print(f"qaudio emulator on {emu.base_url}  (answers are emulated, not from Qwen)", flush=True)
    print(f"  export DASHSCOPE_HTTP_BASE_URL={emu.base_url}", flush=True)
    print(f"  export OPENAI_BASE_URL={emu.openai_base_url}   # for -m openai:MODEL", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
