"""``au-agent describe``: OpenFace CSVs → one JSON line per frame with its description or why it has none.

All frames of all files are gathered first, so the agent sees each distinct AU input once, in large batches.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Tuple

from au_core import atomic
from au_core.errors import AUAgentError
from au_core.openface import DEFAULT_MIN_CONFIDENCE, OpenFaceTrack, read_openface_csv
from au_core.video_names import check_unique_videos

if TYPE_CHECKING:
    from ..features.protocols import CorpusDescriber

log = logging.getLogger(__name__)


def expand_csv_paths(paths: Iterable[os.PathLike]) -> List[Path]:
    """Files as given, folders as their ``*.csv`` files, in a stable order; two with one video name are refused."""
    out: List[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.csv"))
            if not found:
                raise AUAgentError("no *.csv files in the folder", p)
            out += found
        else:
            out.append(p)
    check_unique_videos(out)
    return out


def frame_records(track: OpenFaceTrack, descriptions: Dict[str, str]) -> List[Dict[str, object]]:
    records = []
    for i, frame in enumerate(track.frames.tolist()):
        input_str = track.input_string(i)
        rec: Dict[str, object] = {"video": track.video, "frame": frame, "input": input_str}
        if input_str is None:
            rec.update(description=None, masked=track.reasons[i])
        else:
            rec["description"] = descriptions[input_str]
        records.append(rec)
    return records


def describe_csvs(paths: Iterable[os.PathLike], agent: CorpusDescriber, out: Optional[os.PathLike] = None,
                  batch_size: int = 16, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                  progress: bool = True) -> Tuple[List[str], Dict[str, int]]:
    """Describe every frame: the JSON lines (also written to ``out`` atomically when given) and a summary."""
    tracks = [read_openface_csv(p, min_confidence) for p in expand_csv_paths(paths)]
    for t in tracks:
        problem = t.no_valid_frame()
        if problem:
            log.warning("%s: %s; every frame is written without a description", t.path, problem)
    inputs = sorted({s for t in tracks for s in t.input_strings() if s is not None})
    descriptions = dict(zip(inputs, agent.describe_inputs(inputs, batch_size=batch_size, progress=progress)))
    lines = [json.dumps(r, ensure_ascii=False) for t in tracks for r in frame_records(t, descriptions)]
    if out is not None:
        atomic.write_text(out, "\n".join(lines) + "\n" if lines else "")
    masked = sum(int((~t.valid).sum()) for t in tracks)
    return lines, {"videos": len(tracks), "frames": len(lines), "masked": masked, "distinct_inputs": len(inputs),
                   **agent.cache_stats()}
