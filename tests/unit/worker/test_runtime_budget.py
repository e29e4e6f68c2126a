"""The worker's own memory: it is reported as part of every stage's peak RSS, in every pod.

A fresh interpreter imports the console script's module and creates the pod sink as a pod
would (service account, in-cluster env), then sends one patch over TLS. Its VmRSS, less a bare
interpreter's, must stay within budget, and the heavy modules the worker avoids must stay
unloaded: a new eager import fails this test.

On the machine the budgets were set on (Python 3.11, OpenSSL 3.0): bare 8.6 MiB, imports and
sink 14.1 MiB (+5.5), after a TLS patch 20.6 MiB (+12.0; OpenSSL alone is ~5.5 of that).
"""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
from pathlib import Path

import kubedag
from tests.unit.worker.tls_api import TlsApi, service_account

MIB = 2**20
IMPORT_BUDGET = 6.5 * MIB  # over a bare interpreter: import kubedag.worker.cli + the pod sink
SENT_BUDGET = 13.5 * MIB  # the same after one patch: OpenSSL, a TLS context and a handshake
# Never loaded by the worker on Linux before its first patch (~0.2 to 5.5 MiB each).
NOT_BEFORE_A_PATCH = ("ssl", "_ssl", "socket", "psutil", "urllib.request", "http.client", "email",
                      "dataclasses", "inspect", "subprocess", "datetime", "yaml", "base64")
NEVER = ("psutil", "urllib.request", "http.client", "email", "unicodedata", "dataclasses",
         "subprocess", "yaml")

PROBE = """
import sys

def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024

if sys.argv[1] == "bare":
    print(rss())
    raise SystemExit
import kubedag.worker.cli
from pathlib import Path
from kubedag.worker import progress

progress.SERVICE_ACCOUNT = Path(sys.argv[2])
sink = progress.sink_from_env({"KUBERNETES_SERVICE_HOST": "127.0.0.1",
    "KUBERNETES_SERVICE_PORT": sys.argv[3], "KUBEDAG_NAMESPACE": "ns", "KUBEDAG_POD_NAME": "p"})
assert sink is not progress.log_sink
imported, imported_modules = rss(), sorted(sys.modules)
sink(progress.Update(0.5, "half", "2026-01-01T00:00:00.000Z"))
import json
print(json.dumps({"imported": imported, "imported_modules": imported_modules, "sent": rss(),
                  "sent_modules": sorted(sys.modules)}))
"""



def _fresh_bytecode() -> None:
    """Up-to-date .pyc files, as an installed image has: compiling from source holds on to
    memory, and the environment may say not to write bytecode (PYTHONDONTWRITEBYTECODE)."""
    package = Path(kubedag.__file__).parent
    compileall.compile_dir(package / "worker", quiet=1)
    for module in ("__init__.py", "contract.py"):
        compileall.compile_file(package / module, quiet=1)


def _probe(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def test_the_worker_runtime_fits_its_memory_budget(tls_api: TlsApi, tmp_path: Path) -> None:
    _fresh_bytecode()
    bare = int(_probe("bare"))
    account = service_account(tmp_path / "sa", tls_api.pki.ca_cert)
    result = json.loads(_probe("worker", str(account), str(tls_api.port)))
    assert len(tls_api.requests) == 1

    def shown(rss: int) -> str:
        return f"{rss / MIB:.1f} MiB ({(rss - bare) / MIB:+.1f} over bare {bare / MIB:.1f})"

    loaded = sorted(set(result["imported_modules"]) & set(NOT_BEFORE_A_PATCH))
    assert not loaded, f"imported before the first patch: {loaded}"
    loaded = sorted(set(result["sent_modules"]) & set(NEVER))
    assert not loaded, f"imported by a patch: {loaded}"
    assert result["imported"] - bare <= IMPORT_BUDGET, f"imports: {shown(result['imported'])}"
    assert result["sent"] - bare <= SENT_BUDGET, f"after a patch: {shown(result['sent'])}"
