"""The one place that imports OpenVINO and NNCF, with their telemetry turned off first.

Both report usage through the `openvino_telemetry` package: `import openvino` sends an event
(a forked process resolves www.google-analytics.com) and writes a client id under `~/intel/`;
`import nncf` does the same. Their documented opt-out (`opt_in_out --opt_out`) writes a consent
file under `~/intel/` too, so it cannot keep HOME untouched. Both libraries fall back to a
do-nothing stub when `openvino_telemetry` cannot be imported, so it is made unimportable
(a `None` entry in `sys.modules`) before either is imported: nothing is sent or written.
"""
from __future__ import annotations

import logging
import sys
from types import ModuleType

log = logging.getLogger(__name__)
TELEMETRY_MODULE = "openvino_telemetry"


def ensure_quiet_openvino() -> None:
    """Make OpenVINO's and NNCF's telemetry unimportable in this process (idempotent)."""
    loaded = sys.modules.setdefault(TELEMETRY_MODULE, None)
    if loaded is not None:
        log.warning("%s was imported before OpenVINO's telemetry could be turned off", TELEMETRY_MODULE)


def import_openvino() -> ModuleType:
    """The `openvino` module, imported without telemetry."""
    ensure_quiet_openvino()
    import openvino

    return openvino


def import_nncf() -> ModuleType:
    """The `nncf` module (slow: several seconds), imported without telemetry."""
    ensure_quiet_openvino()
    import nncf

    return nncf
