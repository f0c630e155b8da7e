"""Planning: the segment's frames cut into chunks of whole media segments, in air order."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from .spec import Spec

__all__ = ["Chunk", "ChunkPlan", "plan_chunks", "DEFAULT_CHUNK_SEGMENTS"]

# Measured on 2 cores, 1080p demo with TV, 20 s, whole command (benchmarks/render_speed): 1, 2,
# 4 and 8 segments per chunk all gave 127-128 fps, since a worker's encoder now reuses its memory
# from segment to segment and a chunk costs no process. 2 keeps the first chunks short (the first
# media segment is listed sooner), a lost worker loses little, and resuming is fine-grained.
DEFAULT_CHUNK_SEGMENTS = 2

# With a lead (a render aired while it renders), the media segments after the first are cut in
# halves for this many segments' length: see plan_chunks.
LEAD_HALVED_SEGMENTS = 2

# The last media segments are chunks of one: workers that take the last chunks finish closer
# together, instead of one idling while the other encodes a whole chunk (on 2 cores, half a
# chunk of one core on average: 0.3 s of a 20 s segment's 5 s render).
TAIL_SINGLE_SEGMENTS = 2


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A run of whole media segments: frames [frame_start, frame_end)."""

    index: int
    frame_start: int
    frame_end: int
    first_segment: int
    segment_frames: tuple[int, ...]  # frames of each media segment in the chunk

    @property
    def frame_count(self) -> int:
        return self.frame_end - self.frame_start


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    fps: Fraction
    frames_per_segment: int
    chunks: tuple[Chunk, ...]

    @property
    def segment_count(self) -> int:
        return sum(len(c.segment_frames) for c in self.chunks)

    def segment_frames(self) -> list[int]:
        return [n for c in self.chunks for n in c.segment_frames]


def plan_chunks(
    spec: Spec,
    *,
    chunk_segments: int | None = None,
    ramp: bool = True,
    lead_frames: int | None = None,
) -> ChunkPlan:
    """Cut ``spec.frame_count`` frames into media segments, and those into chunks.

    Every media segment has ``frames_per_segment`` frames except possibly the last. With
    ``ramp`` the first chunks are short (1, then 2 media segments) so the first media segment
    is published early for render-ahead streaming, and the last ``TAIL_SINGLE_SEGMENTS`` are
    chunks of one so that the workers finish together; the output does not depend on chunking.

    ``chunk_segments`` None: :data:`DEFAULT_CHUNK_SEGMENTS`, or 1 with a lead (below).

    ``lead_frames`` (fewer than a segment's frames) splits the first media segment in two:
    ``lead_frames`` frames, then the rest, and the next :data:`LEAD_HALVED_SEGMENTS` segments in
    halves, every later boundary where it was; each of those is a chunk of its own. A live
    channel can air a short first media segment (two LL-HLS parts, say) a fraction of a second
    after the render starts, instead of waiting for a whole segment to be encoded, and what
    follows is ready when it is due (see the comment below for the plan's margins).
    """
    if chunk_segments is not None and chunk_segments < 1:
        raise ValueError("chunk_segments must be at least 1")
    per = spec.output.frames_per_segment
    n = spec.frame_count
    seg_frames = [min(per, n - s) for s in range(0, n, per)]
    split = lead_frames is not None and 0 < lead_frames < seg_frames[0]
    if split:
        seg_frames[:1] = [lead_frames, seg_frames[0] - lead_frames]
        # Then half-length media segments for LEAD_HALVED_SEGMENTS segments' length, each a
        # chunk of its own, and single-segment chunks after (no cost: 1 to 8 segments per chunk
        # measured the same fps, see DEFAULT_CHUNK_SEGMENTS). A chunk is published whole when
        # its last frame is encoded, and the program went on air once 1 s of it was out: early
        # chunks must be done before their first frame is due, while the render is barely
        # ahead. Modelled with 2 workers of c s a frame, the program starting 0.1 s after its
        # first second is out and every chunk due at its air time, the plan keeps up while
        # each worker makes this many fps: 12, 18, 30, 60, ... frames: 28.6; 12, 18, 30, 30,
        # 30, 60, ...: 21.9; 12, 18, 15 x 4, 30, 30, ...: 17.4. Under a viewer's browser on the
        # same 2 cores a worker made 21-35 fps at 1080p, and the plan before aired filler inside
        # new programs ("media segment 2 not rendered in time"). The halves cost a keyframe each.
        halves = []
        for f in seg_frames[2 : 2 + LEAD_HALVED_SEGMENTS]:
            halves += [f // 2, f - f // 2] if f == per else [f]  # a short last one stays whole
        seg_frames[2 : 2 + LEAD_HALVED_SEGMENTS] = halves
        if chunk_segments is None:
            chunk_segments = 1
    if chunk_segments is None:
        chunk_segments = DEFAULT_CHUNK_SEGMENTS
    sizes = [min(1, chunk_segments), min(2, chunk_segments)] if ramp else []
    if split and ramp:
        sizes = [1] * (2 + 2 * LEAD_HALVED_SEGMENTS)  # the lead, the rest and the halves alone
    tail = len(seg_frames) - (TAIL_SINGLE_SEGMENTS if ramp else 0)
    starts, first = [], 0
    while first < len(seg_frames):
        starts.append(first)
        step = sizes[len(starts) - 1] if len(starts) <= len(sizes) else chunk_segments
        first += 1 if first >= tail else min(step, tail - first)
    chunks = []
    offsets = [0]
    for f in seg_frames:
        offsets.append(offsets[-1] + f)
    for c, first in enumerate(starts):
        end = starts[c + 1] if c + 1 < len(starts) else len(seg_frames)
        frames = tuple(seg_frames[first:end])
        start = offsets[first]
        chunks.append(
            Chunk(
                index=c,
                frame_start=start,
                frame_end=start + sum(frames),
                first_segment=first,
                segment_frames=frames,
            )
        )
    return ChunkPlan(fps=spec.output.fps, frames_per_segment=per, chunks=tuple(chunks))
