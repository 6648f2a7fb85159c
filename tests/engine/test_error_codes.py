"""Every named error is found again by its stored code, with words for the user."""

from __future__ import annotations

import importlib

import pytest

from flask_popaccounts.engine import errors


def test_every_code_maps_back_to_its_class_with_a_title_and_help():
    # Errors defined outside the engine register when their modules load.
    for module in ("flask_popaccounts.services.oauth", "flask_popaccounts.services.quota"):
        importlib.import_module(module)

    codes = errors.registered_codes()
    assert {"auth_failed", "certificate_invalid", "connection_failed", "port_not_allowed",
            "oauth_failed", "oauth_not_configured", "quota_exceeded"} <= set(codes)
    for code, cls in codes.items():
        assert cls.code == code
        assert errors.error_for_code(code) is cls
        assert cls.title and cls.help, code
    assert errors.error_for_code("no-such-code") is errors.PopAccountsError


def test_every_engine_error_is_drawn_in_the_module_docstring():
    doc = errors.__doc__ or ""
    engine_codes = [c for c, cls in errors.registered_codes().items()
                    if cls.__module__ == errors.__name__ and c != "error"]
    missing = [c for c in engine_codes if c not in doc]
    assert not missing, f"codes missing from the tree in errors.py: {missing}"


def test_a_second_class_cannot_take_an_existing_code():
    with pytest.raises(TypeError, match="auth_failed"):
        type("Impostor", (errors.PopAccountsError,), {"code": "auth_failed"})
