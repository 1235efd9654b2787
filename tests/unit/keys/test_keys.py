"""keys/: cosign key file format, key types, signing, importing, key refs and safe file writing.

Interoperability is checked against material made outside this package: real cosign-produced key
files, go-securesystemslib's own vectors, files built by an independent implementation of the
published algorithm (tests/data/keys/README.md), and an in-test encrypt/decrypt written straight
from the spec (hashlib.scrypt + nacl SecretBox), never through keys.cosign.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from nacl.secret import SecretBox

import keys
from imgseal.errors import InvalidInputError, KeyMaterialError, UsageError
from keys import cosign as cosign_format
from keys import files as key_files
from tests.datadir import DATA as DATA_DIR

DATA = DATA_DIR / "keys"
COSIGN = DATA / "cosign"
INDEPENDENT = DATA / "independent"
WRONG = "wrong password or corrupted key file"


# --- an independent implementation of the published format (no keys.cosign) ---------------------


def independent_encrypt(der: bytes, password: bytes, *, n: int = 32768,
                        label: str = "ENCRYPTED SIGSTORE PRIVATE KEY", params: dict[str, int] | None = None,
                        kdf_name: str = "scrypt", cipher_name: str = "nacl/secretbox") -> bytes:
    salt, nonce = os.urandom(32), os.urandom(24)
    real_n = n if n <= 131072 else 1024  # never compute a huge scrypt while building a hostile file
    box_key = hashlib.scrypt(password, salt=salt, n=real_n, r=8, p=1, maxmem=256 << 20, dklen=32)
    ciphertext = SecretBox(box_key).encrypt(der, nonce).ciphertext
    doc = {
        "kdf": {"name": kdf_name, "params": params or {"N": n, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": cipher_name, "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return pem_wrap(label, json.dumps(doc).encode())


def pem_wrap(label: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = "".join(b64[i : i + 64] + "\n" for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}-----END {label}-----\n".encode()


def independent_decrypt(pem: bytes, password: bytes) -> bytes:
    text = pem.decode()
    body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    doc = json.loads(base64.b64decode(body))
    params = doc["kdf"]["params"]
    box_key = hashlib.scrypt(password, salt=base64.b64decode(doc["kdf"]["salt"]), n=params["N"],
                             r=params["r"], p=params["p"], maxmem=256 << 20, dklen=32)
    return SecretBox(box_key).decrypt(base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"]))


def pkcs8(key: keys.PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def spki(key: keys.PrivateKey | keys.PublicKey) -> bytes:
    return keys.public_key_of(key).public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)


@functools.cache
def cached_key(kind: str) -> keys.PrivateKey:
    """One key per type for tests that need *a* key, not a fresh one (RSA generation is slow)."""
    return keys.generate(kind)


@pytest.fixture(scope="module")
def p256() -> keys.PrivateKey:
    return cached_key("ecdsa-p256")


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", keys.GENERATE_KEY_TYPES)
def test_round_trip_every_type(kind: str) -> None:
    key = keys.generate(kind)
    assert keys.key_type_name(key) == kind
    # The default strength (N=2**16) is covered by the format and interop tests; this one is about types.
    pem = keys.encrypt_private_key(key, b"s3cret", scrypt_n=32768)
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    loaded = keys.decrypt_private_key(pem, b"s3cret")
    assert spki(loaded) == spki(key)
    public = keys.load_public_key(keys.public_pem(key))
    assert keys.key_type_name(public) == kind
    signature = keys.sign(loaded, b"payload")
    assert keys.verify(public, b"payload", signature)
    assert not keys.verify(public, b"payload.", signature)
    assert not keys.verify(keys.public_key_of(cached_key(kind)), b"payload", signature)
    if kind == keys.DEFAULT_KEY_TYPE:  # the MAC check does not depend on the key type
        with pytest.raises(KeyMaterialError, match=WRONG):
            keys.decrypt_private_key(pem, b"s3cre")


def test_empty_password_round_trip(p256: keys.PrivateKey) -> None:
    pem = keys.encrypt_private_key(p256, b"", scrypt_n=32768)
    assert spki(keys.decrypt_private_key(pem, b"")) == spki(p256)
    with pytest.raises(KeyMaterialError, match=WRONG):
        keys.decrypt_private_key(pem, b" ")


def test_written_format_matches_cosign(p256: keys.PrivateKey) -> None:
    pem = keys.encrypt_private_key(p256, b"pw")
    lines = pem.decode().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    doc = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    # Fresh salt and nonce every time.
    again = json.loads(base64.b64decode("".join(keys.encrypt_private_key(p256, b"pw").decode().splitlines()[1:-1])))
    assert again["kdf"]["salt"] != doc["kdf"]["salt"] and again["cipher"]["nonce"] != doc["cipher"]["nonce"]


# --- interoperability with independent implementations ---------------------------------------------


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ed25519", "rsa-3072"])
def test_independent_file_decrypts_with_ours(kind: str) -> None:
    key = cached_key(kind)
    pem = independent_encrypt(pkcs8(key), b"independent", label="ENCRYPTED COSIGN PRIVATE KEY")
    assert spki(keys.decrypt_private_key(pem, b"independent")) == spki(key)


@pytest.mark.parametrize("kind", ["ecdsa-p384", "ed25519"])
def test_our_file_decrypts_with_independent(kind: str) -> None:
    key = cached_key(kind)
    plaintext = independent_decrypt(keys.encrypt_private_key(key, b"ours"), b"ours")
    assert plaintext == pkcs8(key)


VECTORS = json.loads((INDEPENDENT / "vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["type"] for v in VECTORS])
def test_fixed_independent_vectors(vector: dict[str, object]) -> None:
    pem = (INDEPENDENT / str(vector["key"])).read_bytes()
    password = str(vector["password"]).encode("utf-8")
    key = keys.decrypt_private_key(pem, password)
    assert keys.public_pem(key) == (INDEPENDENT / str(vector["public"])).read_bytes()
    assert keys.key_type_name(key) == vector["type"]
    if int(str(vector["scrypt_n"])) <= 65536:  # keep the suite fast; the MAC check does not depend on N
        with pytest.raises(KeyMaterialError, match=WRONG):
            keys.decrypt_private_key(pem, password + b"x")


@pytest.mark.parametrize("name", ["cosign-label.key", "sigstore.key"])
def test_real_cosign_key_files(name: str) -> None:
    key = keys.decrypt_private_key((COSIGN / name).read_bytes(), b"hello")
    assert keys.key_type_name(key) == "ecdsa-p256"
    assert keys.verify(keys.public_key_of(key), b"x", keys.sign(key, b"x"))


def test_cosign_file_with_sec1_plaintext_is_refused_like_cosign() -> None:
    pem = (COSIGN / "cosign-ec-sec1-plaintext.key").read_bytes()
    with pytest.raises(KeyMaterialError, match="PKCS#8"):
        keys.decrypt_private_key(pem, b"hello")
    # The refusal is about the plaintext's encoding, not the decryption: decrypted independently it is
    # the SEC1 form of cosign's validecp256 fixture.
    sec1 = serialization.load_der_private_key(independent_decrypt(pem, b"hello"), None)
    expected = keys.import_private_pem((COSIGN / "validecp256.pem").read_bytes(), None)
    assert isinstance(sec1, ec.EllipticCurvePrivateKey)
    assert spki(sec1) == spki(expected)


SSL_VECTORS = json.loads((DATA / "securesystemslib-vectors.json").read_text())


@pytest.mark.parametrize("document", SSL_VECTORS["decrypt"] + SSL_VECTORS["unmarshal"])
def test_securesystemslib_vectors(document: str) -> None:
    plaintext = cosign_format.decrypt_blob(document.encode(), SSL_VECTORS["passphrase"].encode())
    if document in SSL_VECTORS["unmarshal"]:  # encrypted.Marshal JSON-encodes the []byte first
        plaintext = base64.b64decode(json.loads(plaintext))
    assert plaintext == SSL_VECTORS["plaintext"].encode()
    if '"N":32768' in document:
        with pytest.raises(KeyMaterialError, match=WRONG):
            cosign_format.decrypt_blob(document.encode(), b"supersecreT")


def test_securesystemslib_unsupported_params_vector() -> None:
    with pytest.raises(KeyMaterialError, match="unsupported scrypt parameters N=99 r=99 p=99"):
        cosign_format.decrypt_blob(SSL_VECTORS["unsupported_params"].encode(), b"supersecret")


# --- scrypt parameter policy (DoS) ----------------------------------------------------------------


def test_other_accepted_strengths(p256: keys.PrivateKey) -> None:
    # N=2**17 is read in test_fixed_independent_vectors (ecdsa-p384) and the securesystemslib OWASP vector.
    pem = independent_encrypt(pkcs8(p256), b"pw", n=32768)
    assert spki(keys.decrypt_private_key(pem, b"pw")) == spki(p256)
    ours = keys.encrypt_private_key(p256, b"pw", scrypt_n=32768)
    assert _body(ours)["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}  # type: ignore[index]
    assert independent_decrypt(ours, b"pw") == pkcs8(p256)


@pytest.mark.parametrize("params", [
    {"N": 2**30, "r": 8, "p": 1},
    {"N": 2**20, "r": 8, "p": 1},
    {"N": 1024, "r": 8, "p": 1},
    {"N": 65536, "r": 16, "p": 1},
    {"N": 65536, "r": 8, "p": 64},
])
def test_other_scrypt_params_rejected_before_any_work(p256: keys.PrivateKey, params: dict[str, int],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pem = independent_encrypt(pkcs8(p256), b"pw", params=params)

    def no_scrypt(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("scrypt must not run for rejected parameters")

    monkeypatch.setattr(cosign_format.hashlib, "scrypt", no_scrypt)
    started = time.monotonic()
    with pytest.raises(KeyMaterialError, match="unsupported scrypt parameters") as info:
        keys.decrypt_private_key(pem, b"pw")
    assert time.monotonic() - started < 0.5
    assert info.value.exit_code == 4


def test_encrypt_refuses_unlisted_strength(p256: keys.PrivateKey) -> None:
    with pytest.raises(KeyMaterialError, match="scrypt N=16384"):
        keys.encrypt_private_key(p256, b"pw", scrypt_n=16384)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("kdf", "argon2id", "KDF 'argon2id'"),
    ("cipher", "aes-gcm", "cipher 'aes-gcm'"),
])
def test_unknown_algorithms_rejected(p256: keys.PrivateKey, field: str, value: str, message: str) -> None:
    kwargs = {"kdf_name": value} if field == "kdf" else {"cipher_name": value}
    pem = independent_encrypt(pkcs8(p256), b"pw", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(KeyMaterialError, match=message):
        keys.decrypt_private_key(pem, b"pw")


# --- corruption -----------------------------------------------------------------------------------


def _body(pem: bytes) -> dict[str, object]:
    return json.loads(base64.b64decode("".join(pem.decode().splitlines()[1:-1])))  # type: ignore[no-any-return]


def _rewrap(doc: object) -> bytes:
    return pem_wrap("ENCRYPTED SIGSTORE PRIVATE KEY", json.dumps(doc).encode())


def _flip_ciphertext(doc: dict) -> None:  # type: ignore[type-arg]
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[5] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(raw)).decode()


CORRUPTIONS = {
    "flipped-ciphertext": _flip_ciphertext,
    "truncated-ciphertext": lambda d: d.update(ciphertext=d["ciphertext"][:8]),
    "bad-base64": lambda d: d.update(ciphertext="***"),
    "short-nonce": lambda d: d["cipher"].update(nonce=base64.b64encode(b"x" * 23).decode()),
    "other-salt": lambda d: d["kdf"].update(salt=base64.b64encode(b"y" * 32).decode()),
    "missing-salt": lambda d: d["kdf"].pop("salt"),
    "missing-ciphertext": lambda d: d.pop("ciphertext"),
    "bool-param": lambda d: d["kdf"]["params"].update(p=True),
    "string-param": lambda d: d["kdf"]["params"].update(N="65536"),
}


@functools.cache
def _sample_file() -> str:
    return json.dumps(_body(keys.encrypt_private_key(cached_key("ed25519"), b"pw", scrypt_n=32768)))


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corruption_is_reported_as_one_error(corrupt: str) -> None:
    doc = json.loads(_sample_file())
    CORRUPTIONS[corrupt](doc)
    with pytest.raises(KeyMaterialError) as info:
        keys.decrypt_private_key(_rewrap(doc), b"pw")
    assert info.value.exit_code == 4
    assert info.value.message == WRONG or "unsupported scrypt parameters" in info.value.message


@pytest.mark.parametrize("pem", [
    b"",
    b"garbage",
    pem_wrap("ENCRYPTED SIGSTORE PRIVATE KEY", b"not json"),
    pem_wrap("ENCRYPTED SIGSTORE PRIVATE KEY", b"[1, 2]"),
    b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n!!!!\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
])
def test_garbage_never_raises_anything_but_key_material_error(pem: bytes) -> None:
    with pytest.raises(KeyMaterialError):
        keys.decrypt_private_key(pem, b"pw")


def test_wrong_pem_type_is_named(p256: keys.PrivateKey) -> None:
    with pytest.raises(KeyMaterialError, match="PEM type 'PUBLIC KEY'"):
        keys.decrypt_private_key(keys.public_pem(p256), b"pw")
    assert not keys.is_encrypted_key_file(keys.public_pem(p256))
    assert keys.is_encrypted_key_file((COSIGN / "sigstore.key").read_bytes())


def test_oversized_key_file_rejected() -> None:
    with pytest.raises(KeyMaterialError, match="too large"):
        keys.decrypt_private_key(b"A" * (1 << 20), b"pw")


# --- signing and verification ----------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "hash_type"), [
    ("ecdsa-p256", hashes.SHA256), ("ecdsa-p384", hashes.SHA384), ("ecdsa-p521", hashes.SHA512),
])
def test_ecdsa_hash_follows_sigstore_registry(kind: str, hash_type: type[hashes.HashAlgorithm]) -> None:
    key = cached_key(kind)
    signature = keys.sign(key, b"m")
    assert isinstance(keys.hash_algorithm(key), hash_type)
    # Checked with cryptography directly: DER-encoded ECDSA over the registry's hash.
    pub = keys.public_key_of(key)
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(signature, b"m", ec.ECDSA(hash_type()))


def test_rsa_is_pkcs1v15_sha256_and_2048_loads() -> None:
    key = keys.import_private_pem((COSIGN / "validrsa.pem").read_bytes(), None)
    assert keys.key_type_name(key) == "rsa-2048"
    signature = keys.sign(key, b"m")
    pub = keys.public_key_of(key)
    assert isinstance(pub, rsa.RSAPublicKey)
    pub.verify(signature, b"m", padding.PKCS1v15(), hashes.SHA256())
    assert isinstance(keys.hash_algorithm(key), hashes.SHA256)


def test_ed25519_pure_and_prehashed() -> None:
    # RFC 8032 §7.3 test vector "abc" for Ed25519ph.
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"))
    expected = bytes.fromhex(
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
        "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")
    assert key.public_key().public_bytes_raw().hex() == (
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
    assert keys.sign(key, b"abc", ed25519ph=True) == expected
    assert keys.sign(key, b"abc") == expected  # Ed25519ph is the default, as cosign's since 2.4
    assert keys.verify(key.public_key(), b"abc", expected, ed25519ph=True)
    assert not keys.verify(key.public_key(), b"abd", expected, ed25519ph=True)
    assert not keys.verify(key.public_key(), b"abc", expected, ed25519ph=False)  # a ph signature is not a pure one
    pure = keys.sign(key, b"abc", ed25519ph=False)
    key.public_key().verify(pure, b"abc")
    assert not keys.verify(key.public_key(), b"abc", pure, ed25519ph=True)
    assert keys.hash_algorithm(key) is None


def test_ed25519_default_verification_accepts_either_scheme_and_nothing_else() -> None:
    """cosign signed pure Ed25519 before 2.4 and Ed25519ph since; a verifier must take both.

    RFC 8032 §7.1 test 3 (pure) and §7.3 (ph) vectors, so each scheme is checked against
    signatures this code did not make.
    """
    pure_key = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"))
    pure_sig = bytes.fromhex(
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a")
    message = bytes.fromhex("af82")
    assert keys.verify(pure_key.public_key(), message, pure_sig)
    assert keys.verify(pure_key.public_key(), message, pure_sig, ed25519ph=False)
    assert not keys.verify(pure_key.public_key(), message, pure_sig, ed25519ph=True)
    ph_key = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"))
    ph_sig = bytes.fromhex(
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
        "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")
    assert keys.verify(ph_key.public_key(), b"abc", ph_sig)
    # Neither scheme's signature stands for another message, or for another key.
    assert not keys.verify(pure_key.public_key(), message + b"\x00", pure_sig)
    assert not keys.verify(ph_key.public_key(), b"abd", ph_sig)
    assert not keys.verify(pure_key.public_key(), b"abc", ph_sig)
    assert not keys.verify(ph_key.public_key(), message, pure_sig)


def test_ed25519ph_only_for_ed25519(p256: keys.PrivateKey) -> None:
    with pytest.raises(UsageError):
        keys.sign(p256, b"m", ed25519ph=True)
    assert not keys.verify(keys.public_key_of(p256), b"m", keys.sign(p256, b"m"), ed25519ph=True)


@pytest.mark.parametrize("signature", [b"", b"\x30\x00", b"x" * 64, b"\x00" * 600])
def test_malformed_signatures_are_false(signature: bytes) -> None:
    for kind in ("ecdsa-p256", "ed25519", "rsa-3072"):
        assert not keys.verify(keys.public_key_of(cached_key(kind)), b"m", signature)


def test_key_id_is_sha256_of_spki(p256: keys.PrivateKey) -> None:
    assert keys.key_id(p256) == hashlib.sha256(spki(p256)).hexdigest()
    assert keys.key_id(keys.public_key_of(p256)) == keys.key_id(p256)


def test_unknown_generate_type() -> None:
    with pytest.raises(UsageError, match="unknown key type 'dsa'"):
        keys.generate("dsa")


# --- public keys -------------------------------------------------------------------------------------


def test_load_public_key_errors(p256: keys.PrivateKey) -> None:
    private_pem = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    with pytest.raises(InvalidInputError, match="got a private key"):
        keys.load_public_key(private_pem)
    with pytest.raises(InvalidInputError, match="does not parse"):
        keys.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    weak = keys.public_key_of(serialization.load_pem_private_key((COSIGN / "invalidecp224.pem").read_bytes(), None))
    weak_pem = weak.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyMaterialError, match="secp224r1 is not allowed"):
        keys.load_public_key(weak_pem)


# --- importing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("validecp256.pem", "ecdsa-p256"),   # SEC1
    ("validecp384.pem", "ecdsa-p384"),
    ("validecp521.pem", "ecdsa-p521"),
    ("validecpkcs8.pem", "ecdsa-p256"),  # PKCS#8
    ("ed25519.pem", "ed25519"),
    ("validrsa.pem", "rsa-2048"),         # PKCS#1
])
def test_import_cosign_fixtures(name: str, kind: str) -> None:
    key = keys.import_private_pem((COSIGN / name).read_bytes(), None)
    assert keys.key_type_name(key) == kind
    # What will be encrypted into the cosign file is PKCS#8 that our strict loader accepts.
    assert pkcs8(keys.material.load_pkcs8_der(pkcs8(key))) == pkcs8(key)


@pytest.mark.parametrize(("name", "message"), [
    ("invalidecp224.pem", "secp224r1 is not allowed"),
    ("invalidecunsupported.pem", "secp256k1 is not allowed"),
    ("invalidrsasmallkey.pem", "RSA key size 1024 is not allowed"),
])
def test_import_refuses_weak_keys_like_cosign(name: str, message: str) -> None:
    with pytest.raises(KeyMaterialError, match=message):
        keys.import_private_pem((COSIGN / name).read_bytes(), None)


def test_import_encrypted_pems(p256: keys.PrivateKey) -> None:
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = p256.private_bytes(serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"src"))
        assert keys.pem_is_encrypted(pem)
        assert spki(keys.import_private_pem(pem, b"src")) == spki(p256)
        with pytest.raises(KeyMaterialError, match=WRONG):
            keys.import_private_pem(pem, b"other")
        with pytest.raises(KeyMaterialError, match="no password was given"):
            keys.import_private_pem(pem, None)
    cosign_file = (COSIGN / "sigstore.key").read_bytes()
    assert keys.pem_is_encrypted(cosign_file)
    assert keys.key_type_name(keys.import_private_pem(cosign_file, b"hello")) == "ecdsa-p256"


def test_import_plain_pem_ignores_password(p256: keys.PrivateKey) -> None:
    pem = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    assert not keys.pem_is_encrypted(pem)
    assert spki(keys.import_private_pem(pem, b"unused")) == spki(p256)


@pytest.mark.parametrize(("pem", "message"), [
    (b"no pem here", "no PEM private key"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "unsupported PEM type 'PUBLIC KEY'"),
    (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "does not parse"),
    (b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n", "PGP"),
])
def test_import_errors(pem: bytes, message: str) -> None:
    with pytest.raises(KeyMaterialError, match=message):
        keys.import_private_pem(pem, None)


# --- key references ------------------------------------------------------------------------------------


def test_read_key_ref_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.pub"
    path.write_bytes(b"PEM DATA\n")
    assert keys.read_key_ref(str(path)) == b"PEM DATA\n"
    monkeypatch.setenv("IMGSEAL_TEST_KEY", "ENV PEM")
    assert keys.read_key_ref("env://IMGSEAL_TEST_KEY") == b"ENV PEM"


@pytest.mark.parametrize(("ref", "error", "message"), [
    ("env://IMGSEAL_TEST_UNSET", KeyMaterialError, "IMGSEAL_TEST_UNSET .* is not set"),
    ("env://IMGSEAL_TEST_EMPTY", KeyMaterialError, "is empty"),
    ("env://1BAD-NAME", UsageError, "invalid environment variable name"),
    ("awskms:///alias/x", UsageError, "unsupported key reference scheme 'awskms'"),
    ("k8s://ns/secret", UsageError, "unsupported key reference scheme 'k8s'"),
    ("", UsageError, "empty key reference"),
])
def test_read_key_ref_errors(ref: str, error: type[Exception], message: str,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGSEAL_TEST_UNSET", raising=False)
    monkeypatch.setenv("IMGSEAL_TEST_EMPTY", "")
    with pytest.raises(error, match=message):
        keys.read_key_ref(ref)


def test_read_key_ref_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="key file not found"):
        keys.read_key_ref(str(tmp_path / "missing.key"))
    with pytest.raises(KeyMaterialError, match="is a directory"):
        keys.read_key_ref(str(tmp_path))
    big = tmp_path / "big"
    big.write_bytes(b"A" * ((1 << 20) + 1))
    with pytest.raises(KeyMaterialError, match="too large"):
        keys.read_key_ref(str(big))


# --- writing key files -----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_key_pair_modes_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        private_path, public_path = keys.write_key_pair(tmp_path / "cosign", b"PRIVATE", b"PUBLIC")
    finally:
        os.umask(old)
    assert (private_path.name, public_path.name) == ("cosign.key", "cosign.pub")
    assert _mode(private_path) == 0o600 and private_path.read_bytes() == b"PRIVATE"
    assert _mode(public_path) == 0o644 and public_path.read_bytes() == b"PUBLIC"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cosign.key", "cosign.pub"]


def test_private_file_is_created_0600_with_excl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        calls.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(key_files.os, "open", spy)
    key_files.write_new_file(tmp_path / "a.key", b"k")
    created = [c for c in calls if c[1] & os.O_CREAT]
    assert created and all(c[1] & os.O_EXCL and c[2] == 0o600 for c in created)


def test_refuses_overwrite_without_force(tmp_path: Path) -> None:
    keys.write_key_pair(tmp_path / "cosign", b"old", b"oldpub")
    with pytest.raises(UsageError, match="refusing to overwrite existing file") as info:
        keys.write_key_pair(tmp_path / "cosign", b"new", b"newpub")
    assert info.value.exit_code == 2
    assert (tmp_path / "cosign.key").read_bytes() == b"old"
    (tmp_path / "cosign.key").unlink()
    with pytest.raises(UsageError, match=r"cosign\.pub"):  # either half existing blocks the pair
        keys.write_key_pair(tmp_path / "cosign", b"new", b"newpub")
    assert not (tmp_path / "cosign.key").exists()
    keys.write_key_pair(tmp_path / "cosign", b"new", b"newpub", force=True)
    assert (tmp_path / "cosign.key").read_bytes() == b"new"
    assert _mode(tmp_path / "cosign.key") == 0o600


def test_symlink_is_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "x.key").symlink_to(victim)
    with pytest.raises(UsageError, match="refusing to overwrite"):
        key_files.write_new_file(tmp_path / "x.key", b"k")
    key_files.write_new_file(tmp_path / "x.key", b"k", force=True)
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "x.key").is_symlink() and (tmp_path / "x.key").read_bytes() == b"k"


def test_no_partial_files_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = key_files.write_new_file

    def fail_on_pub(path: Path, data: bytes, **kwargs: object) -> Path:
        if str(path).endswith(".pub"):
            raise OSError(28, "No space left on device")
        return real(path, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(key_files, "write_new_file", fail_on_pub)
    with pytest.raises(OSError):
        keys.write_key_pair(tmp_path / "cosign", b"k", b"p")
    assert list(tmp_path.iterdir()) == []


def test_temp_file_removed_when_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(key_files.os, "fsync", broken_fsync)
    with pytest.raises(UsageError, match="cannot write"):
        key_files.write_new_file(tmp_path / "a.key", b"k")
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        keys.write_key_pair(tmp_path / "nope" / "cosign", b"k", b"p")
