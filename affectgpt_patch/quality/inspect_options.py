"""The options of ``au-agent inspect``, apart from the code that reads and draws (which imports numpy and the
fidelity lexicon), so the CLI can take its defaults from here at no cost."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from au_core.errors import AUAgentError

SORT_ORDERS = ("failures", "name", "activity")


@dataclass
class InspectOptions:
    input: Path  # a precompute features folder, a describe .jsonl file or an eval folder
    out: Optional[Path] = None  # default: <input>/report.html for a folder, <input stem>.html beside a file
    openface_dir: Optional[Path] = None  # OpenFace CSVs, for full AU × frame heatmaps
    videos: int = 50  # per-video sections (eval: records) drawn; the summary covers all
    sort: str = "failures"  # failures: most masked, then least faithful first | name | activity: most active AUs
    max_columns: int = 240  # heatmap columns at most; longer videos are drawn in bins of frames (their maximum)
    progress: bool = True

    def __post_init__(self) -> None:
        self.input = Path(self.input)
        if self.sort not in SORT_ORDERS:
            raise AUAgentError(f"--sort must be one of {', '.join(SORT_ORDERS)}, got {self.sort!r}")
        if self.videos < 0:
            raise AUAgentError(f"--videos must be 0 or more, got {self.videos}")
        if self.max_columns < 1:
            raise AUAgentError(f"the heatmap needs at least one column, got {self.max_columns}")
        if self.openface_dir is not None and not Path(self.openface_dir).is_dir():
            raise AUAgentError("--openface-dir is not a folder", self.openface_dir)

    @property
    def out_path(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return self.input / "report.html" if self.input.is_dir() else self.input.with_suffix(".html")
