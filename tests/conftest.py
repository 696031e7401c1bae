import sys
from pathlib import Path

# The program's package and the test harness import by name, as `pulumi up` runs them.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
