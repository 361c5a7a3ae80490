"""The committed notebook must not carry error outputs (nbmake executes it separately)."""

import json
from pathlib import Path

NB = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_committed_notebook_has_outputs_and_no_errors():
    nb = json.loads(NB.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, "notebook has no code cells"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any(o.get("data", {}).get("image/png") for o in outputs), "no plot outputs"
