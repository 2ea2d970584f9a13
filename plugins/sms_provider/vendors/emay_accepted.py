"""Emay IMS and FMS send answers read by typed decoding, for the usual batch answer.

A batch answer lists one object per recipient; reading 300 of them into dicts,
cleaning their keys and pairing them one by one cost more than the rest of the
request. The usual answer (every recipient taken, in request order, each with
an id, the custom ids echoed as sent) is decoded straight into columns. For any
other answer these functions return None and the client parses it the general
way, which names what is wrong; so they accept nothing the general parser
would read differently.
"""

from __future__ import annotations

from operator import attrgetter

import msgspec

from sms_provider.models import AcceptedBatch
from sms_provider.vendors.batch_text import blank_in

SUCCESS = "SUCCESS"


class _Ims(msgspec.Struct, gc=False):
    mobile: str
    ims_id: str = msgspec.field(name="imsId")
    custom_id: str | None = msgspec.field(default=None, name="customImsId")


class _ImsPlainAnswer(msgspec.Struct, gc=False):
    code: str
    data: list[_Ims]


class _Fms(msgspec.Struct, gc=False):
    mobile: str
    fms_id: str = msgspec.field(name="fmsId")
    custom_id: str | None = msgspec.field(default=None, name="customFmsId")


_IMS_PLAIN = msgspec.json.Decoder(_ImsPlainAnswer)
_IMS_LIST = msgspec.json.Decoder(list[_Ims])
_FMS_LIST = msgspec.json.Decoder(list[_Fms])
_MOBILE, _CUSTOM_ID = attrgetter("mobile"), attrgetter("custom_id")
_IMS_ID, _FMS_ID = attrgetter("ims_id"), attrgetter("fms_id")


def ims_plain_accepted(body: bytes, mobiles: list[str], custom_ids: list[str | None],
                       charge_items: list[int]) -> AcceptedBatch | None:
    """A plain-interface ``{"code": "SUCCESS", "data": [...]}`` batch answer, or None."""
    try:
        answer = _IMS_PLAIN.decode(body)
    except msgspec.DecodeError:  # the validation errors included
        return None
    if answer.code != SUCCESS:
        return None
    return _accepted(answer.data, _IMS_ID, mobiles, custom_ids, charge_items)


def ims_data_accepted(data: bytes, mobiles: list[str], custom_ids: list[str | None],
                      charge_items: list[int]) -> AcceptedBatch | None:
    """A secure-interface batch answer (the decrypted data, a JSON list), or None."""
    return _list_accepted(_IMS_LIST, _IMS_ID, data, mobiles, custom_ids, charge_items)


def fms_data_accepted(data: bytes, mobiles: list[str], custom_ids: list[str | None],
                      charge_items: list[int]) -> AcceptedBatch | None:
    """An FMS batch answer's data (plain or decrypted, a JSON list), or None."""
    return _list_accepted(_FMS_LIST, _FMS_ID, data, mobiles, custom_ids, charge_items)


def _list_accepted(decoder: msgspec.json.Decoder, message_id: attrgetter, data: bytes,
                   mobiles: list[str], custom_ids: list[str | None], charge_items: list[int]
                   ) -> AcceptedBatch | None:
    try:
        entries = decoder.decode(data)
    except msgspec.DecodeError:  # the validation errors included
        return None
    return _accepted(entries, message_id, mobiles, custom_ids, charge_items)


def _accepted(entries: list, message_id: attrgetter, mobiles: list[str],
              custom_ids: list[str | None], charge_items: list[int]) -> AcceptedBatch | None:
    """Every recipient in order with a clean id, and our custom ids echoed or absent."""
    if len(entries) != len(mobiles) or list(map(_MOBILE, entries)) != mobiles:
        return None
    ids = list(map(message_id, entries))
    if "" in ids or blank_in("".join(ids)):  # the general path strips
        return None
    echoed = list(map(_CUSTOM_ID, entries))
    if echoed != custom_ids and echoed.count(None) != len(echoed):
        return None
    if blank_in("".join(filter(None, custom_ids))):  # the general path strips the echo
        return None
    return AcceptedBatch(mobiles, ids, custom_ids, charge_items, SUCCESS)
