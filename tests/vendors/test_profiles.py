"""Vendor profiles: the one home of each vendor's traits, and everything reads it."""

from __future__ import annotations

import pytest

from sms_provider.get_provider_info import get_provider_info
from sms_provider.vendors.profile import CustomIdScope
from sms_provider.vendors.profiles import PROFILES, UnknownVendorError, profile_of


@pytest.mark.parametrize("conn_type", sorted(PROFILES))
def test_client_class_takes_its_traits_from_the_profile(conn_type: str) -> None:
    profile = PROFILES[conn_type]
    client = profile.client_class()
    assert client.profile is profile and client.vendor == conn_type
    assert client.batch_limit == profile.limits.batch
    assert client.capabilities == profile.capabilities
    assert client.personalised_batches == profile.personalised_batches
    assert CustomIdScope(client.custom_id_scope) is profile.custom_id_scope


def test_one_display_name_per_vendor_in_hooks_and_provider_metadata(airflow_db) -> None:
    from sms_provider.hooks import sms

    names = {c["connection-type"]: c["hook-name"]
             for c in get_provider_info()["connection-types"]}
    assert names == {t: p.label for t, p in PROFILES.items()}
    for conn_type, profile in PROFILES.items():
        hook = getattr(sms, profile.hook_class)
        assert hook.conn_type == conn_type and hook.hook_name == profile.label
        assert hook.default_conn_name == profile.default_conn_id


def test_unknown_vendor_is_named_with_the_known_ones() -> None:
    with pytest.raises(UnknownVendorError, match=r"'emay_xx'.*chuanglan"):
        profile_of("emay_xx")


def test_foreign_numbers_go_only_where_the_number_style_can_write_them() -> None:
    for profile in PROFILES.values():
        assert profile.sends_abroad == (profile.number_style != "mainland")


def test_reconcile_matches_reports_by_the_profiles_id_traits() -> None:
    from sms_provider.data.reconcile import matching

    assert {"chuanglan"} == matching.MSGID_PER_REQUEST
    assert {"emay_ims", "emay_fms"} == matching.CUSTOM_ID_PER_MESSAGE
    assert {"eums"} == matching.CUSTOM_ID_PER_REQUEST
    assert {"eims", "chuanglan"} == matching.SETTLED_BY_MOBILE
