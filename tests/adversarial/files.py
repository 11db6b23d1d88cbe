"""Hostile audio files, made quickly: hours of Opus silence in a few MB."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["opus_silence"]


def opus_silence(hours: float, container: str = "ogg", *, stretch: int = 1) -> bytes:
    """``hours`` of Opus silence: one minute encoded once (60 ms frames), its packets
    then muxed again and again with timestamps moved on — no re-encoding, ~1 s per 10 h.
    ``stretch`` > 1 forges the timestamps: they claim that many times more audio."""
    import av

    rate, frame = 48_000, 2_880  # 60 ms
    encoded = io.BytesIO()
    with av.open(encoded, "w", format=container) as out:
        stream = out.add_stream("libopus", rate=rate, layout="mono")
        stream.options = {"frame_duration": "60"}
        silence = np.zeros((1, frame), dtype=np.int16)
        for _ in range(60 * rate // frame):
            pcm = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            pcm.sample_rate = rate
            for packet in stream.encode(pcm):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    encoded.seek(0)
    with av.open(encoded) as source:
        template = source.streams.audio[0]
        packets = [p for p in source.demux(template) if p.size and p.pts is not None]
        buf = io.BytesIO()
        with av.open(buf, "w", format=container) as out:
            stream = out.add_stream_from_template(template)
            first, step = packets[0].pts, packets[0].duration * stretch  # stream time base
            for k in range(round(hours * 60)):
                for i, p in enumerate(packets):
                    copy = av.Packet(bytes(p))
                    copy.pts = copy.dts = first + (k * len(packets) + i) * step
                    copy.duration = step
                    copy.time_base = p.time_base
                    copy.stream = stream
                    out.mux(copy)
    return buf.getvalue()
