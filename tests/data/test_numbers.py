"""Recipient numbers: every repair rule, every reason, and agreement with phonenumbers.

The vectorised path is held to the per-row baseline (one ``phonenumbers.parse``
per value) three ways: a hypothesis property over realistic decorated input, a
large seeded random sample, and every example number libphonenumber ships.
"""

from __future__ import annotations

import math
import random

import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sms_provider.data.numbers import (
    EMPTY,
    INVALID_NUMBER,
    MANGLED_NUMBER,
    NOT_A_NUMBER,
    NOT_MAINLAND,
    NOT_MOBILE,
    REASONS,
    SEPARATORS,
    TRIM_CHARS,
    NumberCheck,
    check_number_baseline,
    check_numbers,
    expand_scientific,
    float_text,
    format_for_vendor,
    mainland_only,
    repair_text,
)


def verdicts(values: list[str | None], region: str = "CN") -> list[tuple[str | None, str | None]]:
    check = check_numbers(pa.array(values, pa.string()), region)
    return list(zip(check.e164.to_pylist(), check.reason.to_pylist(), strict=True))


def baseline_region(raw: str | None, default_region: str) -> str | None:
    """Where phonenumbers places the value, when it parses at all."""
    text, reason = repair_text(raw)
    if reason is not None:
        return None
    try:
        number = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number)


def assert_agrees(values: list[str | None], region: str = "CN") -> None:
    """Same verdict, e164, reason code and region as phonenumbers, value by value."""
    check = check_numbers(pa.array(values, pa.string()), region)
    mine = zip(check.e164.to_pylist(), check.reason.to_pylist(), check.region.to_pylist(),
               strict=True)
    theirs = [(*check_number_baseline(value, region), baseline_region(value, region))
              for value in values]
    wrong = [(value, m, t) for value, m, t in zip(values, mine, theirs, strict=True) if m != t]
    assert not wrong, wrong[:10]


# --- every shape of input --------------------------------------------------------------

MOBILE = "8613800138000"

KEPT = [
    "13800138000", " 13800138000 ", "\u3000138\u00a00013 8000\u3000", "\t13800138000\r\n",
    "138-0013-8000", "138 0013 8000", "138.0013.8000", "(138)0013-8000", "138/0013/8000",
    "[138] 0013 8000", "138\u20140013\u20148000", "138\uff0d0013\uff0d8000",
    "+86 138 0013 8000", "+8613800138000", "+86-138-0013-8000", "(+86)13800138000",
    "(+86) 138 0013 8000", "0086 138 0013 8000", "008613800138000", "8613800138000",
    "86 138 0013 8000", "+0086 13800138000", "++86 13800138000", "13800138000+",
    "１３８００１３８０００", "＋８６ １３８ ００１３ ８０００", "+８６１３８００１３８０００",
    "13800138000.0", "13800138000.000", "8613800138000.0", "１３８００１３８０００.０",
    "1.38001380000E+10", "1.38001380000e+10", "8.613800138000E+12", " 1.38001380000E+10 ",
    "-" * 239 + "13800138000",
]


@pytest.mark.parametrize("raw", KEPT)
def test_decorated_mainland_mobiles_are_kept(raw: str) -> None:
    check = check_numbers(pa.array([raw]))
    assert check.to_table().to_pylist() == [{
        "e164": MOBILE, "country_code": 86, "national": "13800138000", "region": "CN",
        "reason": None}]
    assert check_number_baseline(raw) == (MOBILE, None)


REFUSED = {
    None: EMPTY, "": EMPTY, "   ": EMPTY, "\u3000\u00a0": EMPTY, "\t\r\n": EMPTY,
    "1.38E+10": MANGLED_NUMBER, "1.38001E+10": MANGLED_NUMBER, "1E+10": MANGLED_NUMBER,
    "1.38001380005E+10": MANGLED_NUMBER, "1.3800138E+10": MANGLED_NUMBER,
    "8.613800138E+12": MANGLED_NUMBER,
    "8.6138E+12": MANGLED_NUMBER,
    "abc": NOT_A_NUMBER, "N/A": NOT_A_NUMBER, "#N/A": NOT_A_NUMBER, "无": NOT_A_NUMBER,
    "13800l38000": NOT_A_NUMBER, "13800138000 ext 12": NOT_A_NUMBER,
    "138 0013 8000 x12": NOT_A_NUMBER, "tel:+8613800138000": NOT_A_NUMBER,
    "138*0013*8000": NOT_A_NUMBER, "138~0013": NOT_A_NUMBER, "138,0013,8000": NOT_A_NUMBER,
    "1": NOT_A_NUMBER, "+": NOT_A_NUMBER, "--": NOT_A_NUMBER, "()": NOT_A_NUMBER,
    "+ +86 13800138000": NOT_A_NUMBER, "138+0013+8000": NOT_A_NUMBER, "+12": NOT_A_NUMBER,
    "1 2": NOT_A_NUMBER, "\u0661\u0663\u0668": NOT_A_NUMBER, "138\t0013": NOT_A_NUMBER,
    "-" * 240 + "13800138000": INVALID_NUMBER,  # 251 characters: parse() refuses them
    "12": INVALID_NUMBER, "12345": INVALID_NUMBER, "1380013800": INVALID_NUMBER,
    "138001380001": INVALID_NUMBER, "12000138000": INVALID_NUMBER, "+999 1234 5678": INVALID_NUMBER,
    "+0 123 4567": INVALID_NUMBER, "0000000": INVALID_NUMBER, "+86": NOT_A_NUMBER,
    "+86 1": INVALID_NUMBER, "00": INVALID_NUMBER, "0099912345678": INVALID_NUMBER,
    "1" * 30: INVALID_NUMBER, "13800138000.5": INVALID_NUMBER,
    "010-12345678": NOT_MOBILE, "010 1234 5678": NOT_MOBILE, "+86 10 1234 5678": NOT_MOBILE,
    "(0755)1234 5678": NOT_MOBILE, "021-12345678": NOT_MOBILE, "400-810-8888": NOT_MOBILE,
    "4008108888": NOT_MOBILE, "800-810-8888": NOT_MOBILE, "+86 400 810 8888": NOT_MOBILE,
    "+1 800 555 0199": NOT_MOBILE, "+44 20 7946 0958": NOT_MOBILE, "+852 2123 4567": NOT_MOBILE,
}


@pytest.mark.parametrize(("raw", "reason"), list(REFUSED.items()))
def test_each_refusal_has_its_reason(raw: str | None, reason: str) -> None:
    check = check_numbers(pa.array([raw], pa.string()))
    assert check.reason.to_pylist() == [reason]
    assert check.e164.to_pylist() == [None]
    assert check.national.to_pylist() == [None]
    assert check.country_code.to_pylist() == [None]
    assert check_number_baseline(raw) == (None, reason)


INTERNATIONAL = [
    ("+1 212 555 0123", "12125550123", 1, "2125550123", "US"),
    ("+1 (415) 555-0123", "14155550123", 1, "4155550123", "US"),
    ("+1 268 464 1234", "12684641234", 1, "2684641234", "AG"),
    ("+1 204 234 5678", "12042345678", 1, "2042345678", "CA"),
    ("+44 7400 123456", "447400123456", 44, "7400123456", "GB"),
    ("+44 (0)7400 123456", "447400123456", 44, "7400123456", "GB"),
    ("+7 912 345 6789", "79123456789", 7, "9123456789", "RU"),
    ("+7 701 234 5678", "77012345678", 7, "7012345678", "KZ"),
    ("+852 5123 4567", "85251234567", 852, "51234567", "HK"),
    ("00852 5123 4567", "85251234567", 852, "51234567", "HK"),
    ("+853 6612 3456", "85366123456", 853, "66123456", "MO"),
    ("+886 912 345 678", "886912345678", 886, "912345678", "TW"),
    ("+81 90-1234-5678", "819012345678", 81, "9012345678", "JP"),
    ("+65 8123 4567", "6581234567", 65, "81234567", "SG"),
    ("0061 412 345 678", "61412345678", 61, "412345678", "AU"),
    ("+49 1512 3456789", "4915123456789", 49, "15123456789", "DE"),
    ("17951 00 1 212 555 0123", "12125550123", 1, "2125550123", "US"),
]


@pytest.mark.parametrize(("raw", "e164", "code", "national", "region"), INTERNATIONAL)
def test_international_numbers(raw: str, e164: str, code: int, national: str,
                               region: str) -> None:
    check = check_numbers(pa.array([raw]))
    assert check.to_table().to_pylist() == [{
        "e164": e164, "country_code": code, "national": national, "region": region,
        "reason": None}]
    assert check_number_baseline(raw) == (e164, None)
    parsed = phonenumbers.parse("+" + e164)
    assert phonenumbers.region_code_for_number(parsed) == region


def test_refused_numbers_keep_their_region_when_it_is_known() -> None:
    check = check_numbers(pa.array(["010-12345678", "+44 20 7946 0958", "abc", "12345"]))
    assert check.region.to_pylist() == ["CN", "GB", None, "CN"]


def test_every_reason_code_is_reachable() -> None:
    values = [None, "abc", "1.38E+10", "12345", "010-12345678", "+852 5123 4567"]
    check = mainland_only(check_numbers(pa.array(values, pa.string())))
    assert set(check.reason.to_pylist()) == set(REASONS)


# --- the spreadsheet repair rules ----------------------------------------------------------


@pytest.mark.parametrize(("text", "digits"), [
    ("1.38001380000E+10", "13800138000"),      # every digit written
    ("1.380013800000E+10", "13800138000"),     # and a zero more than needed
    ("1.3800138E+10", None),                   # may be 13800138123 rounded: never guess
    ("1.380014E+10", None),
    ("1.38001E+10", None),                     # Excel's General format: digits lost
    ("1.38E+10", None),
    ("1E+10", None),
    ("1.38001380001E+10", None),               # not a whole number
    ("8.613800138000E+12", "8613800138000"),
    ("8.6138001380E+12", None),
    ("1.2345678E+300", None),                  # absurdly long
])
def test_expand_scientific(text: str, digits: str | None) -> None:
    assert expand_scientific(text) == digits


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text("0123456789", min_size=1, max_size=1),
                          st.text("0123456789", max_size=16),
                          st.sampled_from(["E+", "e+", "E", "e"]),
                          st.integers(0, 20).map(str) | st.sampled_from(["010", "300", "9" * 25])),
                min_size=1, max_size=30))
def test_scientific_notation_agrees_with_the_scalar_rule(
        parts: list[tuple[str, str, str, str]]) -> None:
    values = [lead + ("." + fraction if fraction else "") + sign + exponent
              for lead, fraction, sign, exponent in parts]
    assert_agrees(values, "CN")
    assert_agrees(values, "US")


def test_repair_text() -> None:
    assert repair_text(None) == (None, EMPTY)
    assert repair_text(" \u3000") == (None, EMPTY)
    assert repair_text("１３８００１３８０００.０") == ("13800138000", None)
    assert repair_text("＋８６ 138") == ("+86 138", None)
    assert repair_text("138\u3000001") == ("138\u3000001", None)
    assert repair_text("1.38E+10") == (None, MANGLED_NUMBER)
    assert repair_text("138x") == (None, NOT_A_NUMBER)


def test_float_text_renders_whole_numbers_without_fraction() -> None:
    values = pa.array([13800138000.0, 8613800138000.0, 1.5, math.nan, None, 1e20, 0.0])
    assert float_text(values).to_pylist() == ["13800138000", "8613800138000", "1.5", None,
                                              None, "1e+20", "0"]


def test_numeric_and_dictionary_columns_are_accepted() -> None:
    assert check_numbers(pa.array([13800138000, None])).e164.to_pylist() == [MOBILE, None]
    floats = check_numbers(pa.array([13800138000.0, math.nan, 1e20, 1.38e10]))
    assert floats.e164.to_pylist() == [MOBILE, None, None, "8613800000000"]
    assert floats.reason.to_pylist() == [None, EMPTY, MANGLED_NUMBER, None]
    words = pa.array(["13800138000", "abc", "13800138000"]).dictionary_encode()
    assert check_numbers(words).reason.to_pylist() == [None, NOT_A_NUMBER, None]
    assert check_numbers(pa.array([], pa.string())).e164.to_pylist() == []
    assert check_numbers(pa.nulls(3)).reason.to_pylist() == [EMPTY] * 3
    assert check_numbers(["13800138000"]).e164.to_pylist() == [MOBILE]


def test_large_chunked_input_keeps_row_order() -> None:
    rng = random.Random(7)
    values = [rng.choice(KEPT + list(REFUSED)) for _ in range(150_000)]
    whole = check_numbers(pa.array(values, pa.string()))
    pieces = pa.chunked_array([pa.array(values[i:i + 7_001], pa.string())
                               for i in range(0, len(values), 7_001)])
    chunked = check_numbers(pieces)
    assert whole.to_table().equals(chunked.to_table())
    expected = [check_numbers(pa.array([v], pa.string())).reason[0].as_py() for v in values[:300]]
    assert whole.reason.to_pylist()[:300] == expected


def test_result_types() -> None:
    check = check_numbers(pa.array(["13800138000", "x"]))
    assert isinstance(check, NumberCheck) and len(check) == 2
    assert check.e164.type == pa.string() and check.national.type == pa.string()
    assert check.country_code.type == pa.int32()
    assert check.region.type == pa.string() and check.reason.type == pa.string()
    assert check.valid.to_pylist() == [True, False]


def test_unknown_default_region_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown default region"):
        check_numbers(pa.array(["13800138000"]), "XX")


def test_default_region_changes_the_reading_of_national_numbers() -> None:
    values = ["2125550123", "07400 123456", "13800138000"]
    assert verdicts(values, "US")[0] == ("12125550123", None)
    assert verdicts(values, "gb")[1] == ("447400123456", None)
    assert_agrees(values, "US")
    assert_agrees(values, "GB")


# --- vendor formats ------------------------------------------------------------------------


def test_vendor_formats() -> None:
    check = check_numbers(pa.array(["+86 138 0013 8000", "+852 5123 4567", "abc", None],
                                   pa.string()))
    assert format_for_vendor(check, "emay_ims").to_pylist() == [
        "008613800138000", "0085251234567", None, None]
    assert format_for_vendor(check, "eims").to_pylist() == ["8613800138000", "85251234567",
                                                            None, None]
    for vendor in ("emay_fms", "eums", "chuanglan"):
        assert format_for_vendor(check, vendor).to_pylist() == ["13800138000", None, None, None]
    with pytest.raises(ValueError, match=r"unknown connection type .nope."):
        format_for_vendor(check, "nope")


def test_mainland_only() -> None:
    check = mainland_only(check_numbers(pa.array(["13800138000", "+1 212 555 0123", "abc"])))
    assert check.reason.to_pylist() == [None, NOT_MAINLAND, NOT_A_NUMBER]
    assert check.e164.to_pylist() == [MOBILE, None, None]
    assert check.country_code.to_pylist() == [86, None, None]
    assert check.national.to_pylist() == ["13800138000", None, None]
    assert check.region.to_pylist() == ["CN", "US", None]


def test_mainland_verdicts_inside_the_pass_match_the_rewrite_after_it() -> None:
    rng = random.Random(11)
    values = pa.array([random_value(rng) for _ in range(3000)]
                      + ["+44 7400 123456", "0085291234567", "13800138000"] * 30000, pa.string())
    inside = check_numbers(values, mainland=True)
    after = mainland_only(check_numbers(values))
    assert inside.to_table().equals(after.to_table())
    assert NOT_MAINLAND in inside.reason.to_pylist()


# --- agreement with phonenumbers -------------------------------------------------------------

MOBILE_HEADS = ["130", "133", "138", "145", "147", "150", "159", "166", "170", "171", "175",
                "178", "180", "186", "189", "191", "192", "198", "199", "100", "110", "120",
                "123", "179", "140", "160", "1610", "1740", "1749"]
INTERNATIONAL_EXAMPLES = [
    phonenumbers.format_number(example, style)
    for region in ("US", "CA", "AG", "PR", "GB", "GG", "JE", "IM", "RU", "KZ", "HK", "MO", "TW",
                   "JP", "SG", "AU", "CX", "DE", "FR", "IT", "VA", "BR", "AR", "IN", "MX", "FI",
                   "AX", "NO", "SJ")
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
                 phonenumbers.PhoneNumberType.TOLL_FREE)
    if (example := phonenumbers.example_number_for_type(region, kind)) is not None
    for style in (phonenumbers.PhoneNumberFormat.E164,
                  phonenumbers.PhoneNumberFormat.INTERNATIONAL)
]
DIGITS = st.text("0123456789", min_size=0, max_size=10)


@st.composite
def cn_number(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["mobile", "mobile", "landline", "tollfree", "digits"]))
    if kind == "mobile":
        head = draw(st.sampled_from(MOBILE_HEADS))
        return head + draw(st.text("0123456789", min_size=6, max_size=10))
    if kind == "landline":
        area = draw(st.sampled_from(["010", "021", "020", "0755", "0571", "0898", "10", "755"]))
        return area + draw(st.text("0123456789", min_size=6, max_size=9))
    if kind == "tollfree":
        return draw(st.sampled_from(["400", "800", "4008", "8008"])) + draw(DIGITS)
    return draw(st.text("0123456789", min_size=1, max_size=18))


@st.composite
def decorated(draw: st.DrawFn) -> str:
    """A number the way a spreadsheet might hold it."""
    base = draw(st.one_of(cn_number(), st.sampled_from(INTERNATIONAL_EXAMPLES)))
    style = draw(st.sampled_from(["plain", "prefix", "separators", "full_width", "float",
                                  "scientific", "padded"]))
    if style == "prefix":
        prefix = draw(st.sampled_from(["+86", "86", "0086", "+86 ", "(+86)", "+", "00", "0",
                                       "＋８６", "+0086", "+00", "001", "011", "810", "0 0",
                                       "17951", "+86-", "++"]))
        base = prefix + base
    elif style == "separators":
        chars = list(base)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(chars)))
            chars.insert(at, draw(st.sampled_from(SEPARATORS)))
        base = "".join(chars)
    elif style == "full_width":
        base = "".join(chr(ord(c) - 48 + 0xFF10) if c.isdigit() and draw(st.booleans())
                       else "＋" if c == "+" else c for c in base)
    elif style == "float" and base.isdigit():
        base += draw(st.sampled_from([".0", ".00", ".5"]))
    elif style == "scientific" and base.isdigit() and len(base) > 1:
        kept = draw(st.integers(1, len(base) + 1))
        mantissa = base[0] + "." + base[1:kept] if kept > 1 else base[0]
        base = mantissa + draw(st.sampled_from(["E+", "e+", "E"])) + str(len(base) - 1)
    elif style == "padded":
        base = draw(st.text(TRIM_CHARS, max_size=3)) + base + draw(st.text(TRIM_CHARS,
                                                                          max_size=3))
    return base


JUNK = st.text(st.sampled_from("0123456789+" + SEPARATORS + "０１２３４５６７８９＋．eExa#*~,;"),
               max_size=20)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(decorated(), decorated(), JUNK, st.none()), min_size=1, max_size=40),
       st.sampled_from(["CN", "CN", "CN", "US", "GB", "RU", "HK"]))
def test_property_same_verdicts_as_phonenumbers(values: list[str | None], region: str) -> None:
    assert_agrees(values, region)


def random_value(rng: random.Random) -> str:
    """Realistic and adversarial values alike, from a seeded generator."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 14)))
    pick = rng.random()
    if pick < 0.4:
        head = rng.choice(["", "+", "00", "0", "86", "+86", "0086", "+0086", "1", "+1", "+44",
                           "44", "0044", "+7", "8", "810", "+852", "852", "17951", "+0", "++",
                           "+81", "+61", "001", "011", "+55", "+54", "+378", "+672", "+882"])
        return head + rng.choice(["", " ", "-", "(", ")"]) + rng.choice(
            ["1", "13", "15", "18", "19", "17", "0", "2", "4008", "800", "7", "9"]) + digits
    if pick < 0.6:
        alphabet = "0123456789" * 3 + "+" * 2 + SEPARATORS + "０１２３４５６７８９＋．eEx#"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 18)))
    if pick < 0.75:
        return rng.choice(INTERNATIONAL_EXAMPLES)
    if pick < 0.85 and len(digits) > 1:
        exponent = f"E+{len(digits) - 1}"
        return rng.choice([digits + ".0", digits[0] + "." + digits[1:] + exponent,
                           digits[0] + "." + digits[1:rng.randint(1, len(digits))] + exponent])
    return rng.choice(["", " ", "\u3000", "\t"]) + digits + rng.choice(["", " ", "+", "-", ")"])


@pytest.mark.parametrize("region", ["CN", "US", "GB", "RU", "JP", "BR", "AR", "AU"])
def test_seeded_random_sample_agrees_with_phonenumbers(region: str) -> None:
    rng = random.Random(20240601 + ord(region[0]) * 256 + ord(region[1]))
    size = 100_000 if region == "CN" else 4_000
    assert_agrees([random_value(rng) for _ in range(size)], region)


def test_every_example_number_agrees_with_phonenumbers() -> None:
    """libphonenumber's own example numbers, every region and type, three formats."""
    values = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for style in (phonenumbers.PhoneNumberFormat.E164,
                          phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                          phonenumbers.PhoneNumberFormat.NATIONAL):
                values.append(phonenumbers.format_number(example, style))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            values.append(phonenumbers.format_number(example,
                                                     phonenumbers.PhoneNumberFormat.E164))
    assert len(values) > 3000
    assert_agrees(values, "CN")
    kept = sum(reason is None for _, reason in verdicts(values, "CN"))
    assert kept > 500


def written_at_home(region: str) -> list[str]:
    """A region's example numbers the way its own residents write them, and near misses."""
    values = []
    idd = phonenumbers.PhoneMetadata.metadata_for_region(region).international_prefix or ""
    for kind in range(11):
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
        nsn = phonenumbers.national_significant_number(example)
        code = str(example.country_code)
        values += [national, nsn, code + nsn, "0" + nsn, "8" + nsn, nsn[:-1], nsn + "0",
                   "+" + code + nsn, "00" + code + nsn, "+" + code + "0" + nsn]
        if idd.isdigit():
            values += [idd + code + nsn, idd + "0" + code + nsn]
    return values


def test_every_region_reading_its_own_numbers_agrees_with_phonenumbers() -> None:
    """National prefixes, carrier codes and transform rules of every region, as default."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        assert_agrees(written_at_home(region), region)
