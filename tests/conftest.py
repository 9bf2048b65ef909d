import sys
from pathlib import Path

# Test helper modules (support/, functional/cli_helpers.py) import by plain name.
_TESTS = Path(__file__).resolve().parent
for extra in (_TESTS, _TESTS / "functional"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from support.processes import spawn  # noqa: E402, F401  (a fixture shared by probe tests)
