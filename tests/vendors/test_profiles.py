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


def _simulated_failure_states() -> dict[str, list[str]]:
    """The failed report states each vendor's simulator draws (as its documents list)."""
    from sms_provider.simulator import chuanglan, eums
    from sms_provider.vendors import eims_codes, emay_common

    emay = list(emay_common.FAILURE_STATES)
    return {"emay_ims": emay, "emay_fms": emay, "chuanglan": list(chuanglan.FAILURE_STATES),
            "eums": list(eums.FAILURE_STATES),
            "eims": [str(s) for s in eims_codes.FAILURE_STATES]}


@pytest.mark.parametrize("conn_type", sorted(PROFILES))
def test_every_documented_failure_state_has_a_class_in_the_profile(conn_type: str) -> None:
    from sms_provider.vendors.profile import FailureClass

    profile = profile_of(conn_type)
    states = _simulated_failure_states()[conn_type]
    assert states
    unclassified = [s for s in states
                    if profile.failure_class(s) is FailureClass.UNCLASSIFIED]
    assert unclassified == []


def test_numbers_themselves_at_fault_are_never_resent_and_carrier_failures_are() -> None:
    from sms_provider.vendors.profile import FailureClass

    cases = {("emay_ims", "FAIL_MOBILE"): FailureClass.INVALID_NUMBER,
             ("emay_ims", "FAIL_BLACK_DICT"): FailureClass.BLACKLISTED,
             ("emay_fms", "TIMEOUT"): FailureClass.CARRIER,
             ("eims", "1011"): FailureClass.BLACKLISTED,
             ("eims", "1020"): FailureClass.INVALID_NUMBER,
             ("eims", "1006"): FailureClass.CARRIER,
             ("eums", "MK:0005"): FailureClass.CARRIER,
             ("chuanglan", "MBBLACK"): FailureClass.BLACKLISTED,
             ("chuanglan", "ROUTEERR"): FailureClass.VENDOR,
             ("chuanglan", "KEYWORD"): FailureClass.CONTENT}
    for (vendor, state), expected in cases.items():
        assert profile_of(vendor).failure_class(state) is expected, (vendor, state)
    assert {c.value for c in FailureClass if c.never_resent} == {
        "invalid_number", "blacklisted", "opted_out"}
    assert {c.value for c in FailureClass if c.retry_worthy} == {"carrier", "vendor"}
