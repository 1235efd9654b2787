"""Where the suite's recorded data lives (tests/data/), wherever a test module sits."""

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
REPO = DATA.parent.parent
