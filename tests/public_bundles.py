"""The public-bundle corpus (tests/data/public-bundles): cases, tampered variants, and the three verifiers.

Each case in ``manifest.json`` is a bundle other projects published in their test suites
(GitHub CLI, sigstore-go, sigstore-js), with the trusted root it was made with, the artifact
(a file or a ``sha256:``/``sha512:`` digest), the identity or key to check, optional
thresholds, and the outcome its authors' tests expect (``expected_by`` names the test). The
``derived`` cases change one named thing of a published case. :func:`tampered` makes further
variants at test time (a flipped signature bit, another artifact), which must all fail.

``run_imgseal`` judges a case with ``imgseal verify-bundle`` (``check: subject``) or, for a
DSSE envelope whose payload is not an in-toto statement (``check: signature``), with
:func:`verifier.sigstore.bundle.verify_bundle`, which leaves the subject to its caller.
``run_sigstore_js`` and ``run_sigstore_python`` ask the two peers the same question.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent / "data" / "public-bundles"
RIG = Path(__file__).resolve().parent / "sigstore_rig"
STAGING = "@staging"


@dataclass(frozen=True)
class Case:
    id: str
    spec: dict[str, Any]
    bundle: bytes

    @property
    def expected(self) -> str:
        return str(self.spec["expected"])

    def path(self, key: str) -> Path | None:
        value = self.spec.get(key)
        return ROOT / value if value and value != STAGING else None

    @property
    def staging(self) -> bool:
        """``trusted_root: "@staging"``: the embedded staging root (sigstore-python's, which imgseal embeds)."""
        return self.spec.get("trusted_root") == STAGING

    @property
    def artifact(self) -> str:
        value = str(self.spec["artifact"])
        return value if value.startswith(("sha256:", "sha512:")) else str(ROOT / value)


def cases() -> list[Case]:
    manifest = json.loads((ROOT / "manifest.json").read_bytes())
    return [Case(c["id"], c, (ROOT / c["bundle"]).read_bytes()) for c in manifest["cases"]]


def _flip_signature(doc: dict[str, Any]) -> None:
    if "dsseEnvelope" in doc:
        sig = doc["dsseEnvelope"]["signatures"][0]
    else:
        sig = doc["messageSignature"]
    field = "sig" if "sig" in sig else "signature"
    raw = bytearray(base64.b64decode(sig[field]))
    raw[len(raw) // 2] ^= 0x01
    sig[field] = base64.b64encode(bytes(raw)).decode()


def _flip_payload(doc: dict[str, Any]) -> None:
    if "dsseEnvelope" in doc:
        payload = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
        payload[len(payload) // 2] ^= 0x01
        doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    else:
        md = doc["messageSignature"]["messageDigest"]
        raw = bytearray(base64.b64decode(md["digest"]))
        raw[0] ^= 0x01
        md["digest"] = base64.b64encode(bytes(raw)).decode()


def _flip_log_body(doc: dict[str, Any]) -> None:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    body["spec"]["tampered"] = True
    entry["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()


TAMPERINGS = {"signature-bit": _flip_signature, "payload-bit": _flip_payload, "log-body": _flip_log_body}


def tampered(case: Case) -> Iterator[Case]:
    """Variants of a passing case that must fail: one changed bit or member each."""
    doc = json.loads(case.bundle)
    for name, change in TAMPERINGS.items():
        if name == "log-body" and not doc["verificationMaterial"].get("tlogEntries"):
            continue
        variant = copy.deepcopy(doc)
        change(variant)
        spec = {**case.spec, "expected": "fail", "derived": f"tampered: {name}"}
        yield Case(f"{case.id}~{name}", spec, json.dumps(variant).encode())


@dataclass(frozen=True)
class Answer:
    ok: bool
    detail: str


def _thresholds(spec: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in (spec.get("thresholds") or {}).items()}


def run_imgseal(case: Case, tmp: Path) -> Answer:
    from imgseal.cli.main import app
    from imgseal.errors import Error

    bundle = tmp / "bundle.json"
    bundle.write_bytes(case.bundle)
    spec, th = case.spec, _thresholds(case.spec)
    if spec.get("check") == "signature":
        from verifier.sigstore.bundle import KeylessPolicy, KeyPolicy, Thresholds, verify_bundle

        key = case.path("key")
        policy = (KeyPolicy.from_keys([key.read_bytes()]) if key else
                  KeylessPolicy(identity=spec["identity"], issuer=spec["issuer"]))
        try:
            result = verify_bundle(case.bundle, policy=policy, expect_dsse=True, trusted_root=case.path("trusted_root"),
                                   staging=case.staging,
                                   thresholds=Thresholds(th.get("tlog"), th.get("signed"), th.get("observer")))
        except Error as e:
            return Answer(False, f"{getattr(e, 'reason', '')}: {e}")
        return Answer(True, result.signer)
    args = ["verify-bundle", "--bundle", str(bundle)]
    if case.path("key"):
        args += ["--key", str(case.path("key"))]
    else:
        args += ["--certificate-identity", spec["identity"], "--certificate-oidc-issuer", spec["issuer"]]
    if case.path("trusted_root"):
        args += ["--trusted-root", str(case.path("trusted_root"))]
    elif case.staging:
        args += ["--staging"]
    for name, flag in (("tlog", "--tlog-threshold"), ("signed", "--signed-timestamp-threshold"),
                       ("observer", "--observer-timestamp-threshold")):
        if name in th:
            args += [flag, str(th[name])]
    result = CliRunner().invoke(app, [*args, case.artifact])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Answer(result.exit_code == 0, (result.stdout if result.exit_code == 0 else result.stderr).strip())


def embedded_root_file(tmp: Path, *, staging: bool = False) -> Path:
    from importlib import resources

    name = "trusted_root.staging.json" if staging else "trusted_root.production.json"
    path = tmp / name
    path.write_bytes(resources.files("verifier").joinpath("data", name).read_bytes())
    return path


def run_sigstore_js(case: Case, tmp: Path) -> Answer:
    bundle = tmp / "bundle.json"
    bundle.write_bytes(case.bundle)
    spec, th = case.spec, _thresholds(case.spec)
    root = case.path("trusted_root") or embedded_root_file(tmp, staging=case.staging)
    args = ["node", str(RIG / "verify.mjs"), "--bundle", str(bundle), "--trusted-root", str(root)]
    if case.path("key"):
        args += ["--key", str(case.path("key"))]
    else:
        args += ["--identity", spec["identity"], "--issuer", spec["issuer"]]
    art = case.artifact
    args += ["--digest", art] if art.startswith(("sha256:", "sha512:")) else ["--artifact", art]
    if spec.get("check") == "signature":
        args += ["--any-payload"]
    # sigstore-js counts tlog entries, SCTs and timestamps (TSA or tlog integrated time); its
    # tlog default is 1 whatever the root, so pass the rule gh applies (1 only if the root has logs).
    has_logs = bool(json.loads(root.read_bytes()).get("tlogs"))
    args += ["--tlog-threshold", str(th.get("tlog", int(has_logs))),
             "--timestamp-threshold", str(th.get("observer", 1))]
    if case.path("key"):
        args += ["--ctlog-threshold", "0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    return Answer(proc.returncode == 0, proc.stdout.strip() or proc.stderr.strip()[-300:])


def run_sigstore_python(case: Case, tmp: Path) -> Answer:
    """sigstore-python 4.x: ``Verifier.verify_artifact`` / ``verify_dsse``; it refuses public-key bundles."""
    import sigstore.verify.verifier as sigstore_verifier

    spec = case.spec
    if case.path("key"):
        return Answer(False, "public-key bundles are not supported by sigstore-python 4.x")
    # sigstore-python's one knob is its count of verified times (its tests set it the same way).
    default_threshold = sigstore_verifier.VERIFIED_TIME_THRESHOLD
    sigstore_verifier.VERIFIED_TIME_THRESHOLD = _thresholds(spec).get("observer", default_threshold)
    try:
        return _sigstore_python(case, tmp, spec)
    finally:
        sigstore_verifier.VERIFIED_TIME_THRESHOLD = default_threshold


def _sigstore_python(case: Case, tmp: Path, spec: dict[str, Any]) -> Answer:
    import hashlib

    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy
    from sigstore_models.common.v1 import HashAlgorithm

    try:
        root = TrustedRoot.from_file(str(case.path("trusted_root") or embedded_root_file(tmp, staging=case.staging)))
        verifier = Verifier(trusted_root=root)
        bundle = Bundle.from_json(case.bundle)
        identity = policy.Identity(identity=spec["identity"], issuer=spec["issuer"])
        art = case.artifact
        if "dsseEnvelope" in json.loads(case.bundle):
            payload_type, payload = verifier.verify_dsse(bundle, identity)
            if spec.get("check") == "signature":
                return Answer(True, payload_type)
            subjects = json.loads(payload).get("subject", [])
            if art.startswith(("sha256:", "sha512:")):
                alg, _, hex_ = art.partition(":")
            else:
                data = Path(art).read_bytes()
                alg = next((a for a in ("sha256", "sha512") if any(a in s.get("digest", {}) for s in subjects)),
                           "sha256")
                hex_ = hashlib.new(alg, data).hexdigest()
            if not any(s.get("digest", {}).get(alg) == hex_ for s in subjects):
                return Answer(False, "statement subject does not name the artifact")
            return Answer(True, payload_type)
        if art.startswith("sha256:"):
            verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(art[7:])),
                                     bundle, identity)
        else:
            verifier.verify_artifact(Path(art).read_bytes(), bundle, identity)
        return Answer(True, "verified")
    except (SigstoreError, ValueError, KeyError, TypeError) as e:
        return Answer(False, f"{type(e).__name__}: {str(e)[:200]}")
    except Exception as e:  # a peer crash is an answer too (not ours to fix)
        return Answer(False, f"crash {type(e).__name__}: {str(e)[:200]}")
