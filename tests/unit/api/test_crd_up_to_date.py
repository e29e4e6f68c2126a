"""crds/ must be what the models generate: the CRDs and the Python types cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from kubedag.api.crd import main, rendered_crds

CRDS = Path(__file__).resolve().parents[3] / "crds"


def test_crds_match_the_models() -> None:
    for name, text in rendered_crds().items():
        path = CRDS / name
        assert path.exists(), f"{path} is missing; run `python -m kubedag.api.crd`"
        assert path.read_text() == text, f"{path} is out of date; run `python -m kubedag.api.crd`"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "pipelines.kubedag.io.yaml"
    stale.write_text(stale.read_text().replace("shortNames", "shortNamez"))
    assert main(["--out", str(tmp_path), "--check"]) == 1
