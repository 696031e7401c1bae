import sys
from pathlib import Path

# The program, the test helpers and the policy pack import by name, as Pulumi runs them.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "policy")]
