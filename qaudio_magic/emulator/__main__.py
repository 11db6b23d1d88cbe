"""``python -m qaudio_magic.emulator``: serve the DashScope-protocol emulator on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import Emulator
from .faults import add_arguments, fault_from_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qaudio_magic.emulator",
        description="A loopback emulator of DashScope for Qwen-Audio (answers are emulated).",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--key", help="accept only this API key (default: any key)")
    parser.add_argument(
        "--separate-upload-host",
        action="store_true",
        help="serve the OSS form upload on a second port, as the real service does",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    limits = parser.add_argument_group("rate limits", "429s beyond these, per model (as DashScope)")
    limits.add_argument("--rpm", type=float, help="requests per minute (omni family: 60)")
    limits.add_argument("--tpm", type=float, help="tokens per minute (omni family: 100000)")
    limits.add_argument(
        "--rate-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds' worth allowed in one burst (60: a minute's; 1: RPM/60 per second)",
    )
    add_arguments(parser)  # --latency, --status, --retry-after, --reset ... and --fault SPEC
    args = parser.parse_args(argv)

    emu = Emulator(
        args.port,
        key=args.key,
        verbose=args.verbose,
        separate_upload_host=args.separate_upload_host,
    )
    for fault in fault_from_arguments(args):
        emu.add_fault(fault)
    if args.rpm or args.tpm:
        emu.set_rate_limit(args.rpm, args.tpm, window=args.rate_window)
    emu.start()
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
