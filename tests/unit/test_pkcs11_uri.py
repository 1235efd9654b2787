"""PKCS#11 URI parsing (RFC 7512) and the token-error mapping, without a token."""

from __future__ import annotations

import re

import pytest

from imgseal.errors import KeyMaterialError, UsageError
from keys.pkcs11 import _curve_from_params, _decode_oid, _encode_oid, _mapped, resolve_pin
from keys.pkcs11_uri import Pkcs11Uri, format_uri, is_pkcs11_uri, parse_pkcs11_uri


def test_cosign_form_parses() -> None:
    uri = parse_pkcs11_uri("pkcs11:token=my%20token;object=release;id=%01%ff"
                           "?module-path=/usr/lib/x.so&pin-value=12%2634")
    assert uri == Pkcs11Uri(token="my token", object="release", id=b"\x01\xff", module_path="/usr/lib/x.so",
                            pin_value="12&34")
    assert "pin" not in repr(uri) and "12&34" not in uri.redacted()
    assert parse_pkcs11_uri(uri.redacted()) == Pkcs11Uri(token="my token", object="release", id=b"\x01\xff",
                                                         module_path="/usr/lib/x.so")


def test_round_trip_and_case_insensitive_scheme() -> None:
    uri = Pkcs11Uri(token="a;b", object="k=1", serial="0042", slot_id=3, type="private", module_path="/m.so")
    assert parse_pkcs11_uri(format_uri(uri)) == uri
    assert is_pkcs11_uri("PKCS11:token=x") and not is_pkcs11_uri("./pkcs11.key")


def test_vendor_attributes_are_ignored() -> None:
    assert parse_pkcs11_uri("pkcs11:object=k;x-vendor=1?x-opt=2").object == "k"


@pytest.mark.parametrize(("text", "message"), [
    ("pkcs11:object", "malformed attribute"),
    ("pkcs11:colour=blue", "unknown path attribute colour="),
    ("pkcs11:object=k?token=t", "unknown query attribute token="),
    ("pkcs11:object=k;object=j", "repeats object="),
    ("pkcs11:object=%zz", "malformed percent-encoding"),
    ("pkcs11:object=%ff", "not UTF-8"),
    ("pkcs11:slot-id=one", "not a number"),
    ("pkcs11:type=wheel", "type='wheel'"),
    ("pkcs11:object=k?pin-source=/etc/pin", "pin-source= is not supported"),
    ("pkcs11:object=k?module-name=softhsm2", "module-name= is not supported"),
    ("file.key", "must start with pkcs11:"),
])
def test_bad_uris_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_pkcs11_uri(text)


def test_errors_never_show_the_query_part() -> None:
    with pytest.raises(UsageError) as info:
        parse_pkcs11_uri("pkcs11:colour=x?pin-value=SECRET")
    assert "SECRET" not in info.value.one_line()


def test_pin_order_uri_then_environment_then_prompt() -> None:
    warnings: list[str] = []
    with_pin = Pkcs11Uri(object="k", pin_value="1111")
    assert resolve_pin(with_pin, None, warnings.append, {"IMGSEAL_PKCS11_PIN": "2222"}) == "1111"
    assert len(warnings) == 1 and "1111" not in warnings[0] and "pin-value" in warnings[0]
    assert resolve_pin(Pkcs11Uri(object="k"), lambda: "3333", warnings.append, {"IMGSEAL_PKCS11_PIN": "2222"}) == "2222"
    assert resolve_pin(Pkcs11Uri(object="k"), lambda: "3333", warnings.append, {}) == "3333"
    with pytest.raises(UsageError, match="IMGSEAL_PKCS11_PIN"):
        resolve_pin(Pkcs11Uri(object="k"), None, warnings.append, {})


@pytest.mark.parametrize(("raised", "reason", "text"), [
    ("PinLocked", "pkcs11-pin-locked", "PIN is locked"),
    ("PinIncorrect", "pkcs11-pin", "PIN is incorrect"),
    ("TokenNotPresent", "pkcs11-token", "not present"),
    ("MechanismInvalid", "pkcs11-unusable-key", "refuses this key or mechanism"),
    ("DeviceError", "pkcs11", "DeviceError"),
])
def test_library_errors_map_to_exit_4(raised: str, reason: str, text: str) -> None:
    # SoftHSM v2 never locks a PIN, so CKR_PIN_LOCKED is raised here as python-pkcs11 raises it.
    from pkcs11 import exceptions

    with pytest.raises(KeyMaterialError) as info, _mapped("signing"):
        raise getattr(exceptions, raised)()
    assert info.value.exit_code == 4 and info.value.reason == reason and text in info.value.one_line()


@pytest.mark.parametrize("oid", ["1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35", "1.3.132.0.10"])
def test_oid_codec(oid: str) -> None:
    assert _decode_oid(_encode_oid(oid)[2:]) == oid


def test_curves_outside_the_allowed_set_are_unusable() -> None:
    assert _curve_from_params(_encode_oid("1.2.840.10045.3.1.7")).name == "secp256r1"
    with pytest.raises(KeyMaterialError, match=r"1\.3\.132\.0\.10"):  # secp256k1: cosign's goodkey refuses it too
        _curve_from_params(_encode_oid("1.3.132.0.10"))
