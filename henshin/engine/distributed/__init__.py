"""Distributed offline conversion: a video cut at keyframes into segments converted on many workers.

- ``plan``: segments from the packets' timestamps and keyframes, each segment's seek tried once.
- ``seek``: a decoder brought to a segment: seek to a keyframe, decode forward, frames kept by timestamp.
- ``worker``: one segment through the local stages (``FaceStages`` + ``run_offline``), warm-up and
  look-ahead frames around it, encoded with the local encoder settings.
- ``pool``: the pool interface, and a serial pool in this process.
- ``scheduler``: the Ray pool, the only module that imports Ray.
- ``join``: segments into one output by stream copy, with the source's audio.
- ``workdir``: finished segments kept for a rerun, keyed by input hash and settings.
- ``run``: the whole run: check, plan, convert what is missing, join, figures.
"""
