"""Routing in prepare: each recipient to the first connection that can take it, as the
profiles say; weights split deterministically; one set of shards per connection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sms_provider.data.prepare import PrepareSettings, prepare, read_routing, read_shard
from sms_provider.data.routing import (
    Route,
    RoutingError,
    assign,
    check_weights,
    conn_list,
    plan_routes,
    split_points,
)
from sms_provider.data.storage import DataRoot

CONTENT = "【Shop】Hi {name}"


def csv_file(path: Path, mobiles: list[str]) -> Path:
    path.write_text("mobile,name\n" + "".join(f"{m},n{i}\n" for i, m in enumerate(mobiles)),
                    encoding="utf-8")
    return path


def settings(routes: list[Route], **kw) -> PrepareSettings:
    return PrepareSettings(campaign_id=kw.pop("campaign_id", "r1"), vendor=routes[0].vendor,
                           content=CONTENT, routes=routes, **kw)


def mainland(n: int, start: int = 0) -> list[str]:
    return [f"1380013{i:04d}" for i in range(start, start + n)]


def shards_of(root: DataRoot, campaign: str) -> dict[int, str]:
    routing = read_routing(root, campaign).to_pylist()
    return {r["shard"]: r["conn_id"] for r in routing}


def test_foreign_numbers_go_to_the_first_connection_that_sends_abroad(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    routes = [Route("sms_eums", "eums", 500), Route("sms_emay_ims", "emay_ims", 1000)]
    mobiles = [*mainland(3), "+44 7400 123456", "+1 415 555 2671"]
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", mobiles)), settings(routes))
    assert (summary.prepared, summary.rejected) == (5, 0)
    by_conn = {r["conn_id"]: r for r in summary.routes}
    assert by_conn["sms_eums"]["prepared"] == 3 and by_conn["sms_emay_ims"]["prepared"] == 2
    owner = shards_of(root, "r1")
    assert sorted(owner.values()) == ["sms_emay_ims", "sms_eums"]
    for shard, conn in owner.items():
        rows = read_shard(root, "r1", shard).to_pylist()
        if conn == "sms_eums":  # the mainland vendor's own format
            assert {r["mobile"] for r in rows} == set(mainland(3))
        else:  # Emay IMS writes numbers with 00 and the calling code
            assert {r["mobile"] for r in rows} == {"00447400123456", "0014155552671"}
    assert summary.estimated_items == sum(r["estimated_items"] for r in summary.routes)


def test_a_recipient_no_connection_can_take_is_rejected_saying_so(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    routes = [Route("sms_eums", "eums", 500), Route("sms_chuanglan", "chuanglan", 536)]
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", [*mainland(2), "+44 7400 123456"])),
                      settings(routes))
    assert (summary.prepared, summary.rejected) == (2, 1)
    [row] = root.read_dataset("campaigns/r1/rejected").to_pylist()
    assert row["reason"] == "not_mainland"
    assert row["detail"] == ("number outside mainland China; no connection in conn_ids "
                             "sends abroad (sms_eums, sms_chuanglan)")


def test_a_template_campaign_goes_only_where_templates_are(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    routes = [Route("sms_eums", "eums", 500),
              Route("sms_emay_fms", "emay_fms", None, True, ["name"]),
              Route("sms_emay_ims", "emay_ims", 1000)]
    summary = prepare(root, str(csv_file(tmp_path / "r.csv", [*mainland(2), "+44 7400 123456"])),
                      settings(routes, template_campaign=True))
    by_conn = {r["conn_id"]: r["prepared"] for r in summary.routes}
    assert by_conn == {"sms_eums": 0, "sms_emay_fms": 2, "sms_emay_ims": 0}
    [row] = root.read_dataset("campaigns/r1/rejected").to_pylist()
    assert row["reason"] == "no_route"
    assert "no connection in conn_ids sends abroad" in row["detail"]
    [shard] = shards_of(root, "r1")
    assert {r["variables"] for r in read_shard(root, "r1", shard).to_pylist()} == {
        '{"name":"n0"}', '{"name":"n1"}'}
    with pytest.raises(RoutingError, match=r"no connection in conn_ids .* has templates"):
        plan_routes(routes[:1], template_campaign=True)


def test_content_too_long_for_the_first_goes_to_the_next(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    path = tmp_path / "r.csv"
    path.write_text("mobile,name\n13800130000,short\n13800130001," + "x" * 40 + "\n",
                    encoding="utf-8")
    routes = [Route("sms_a", "eums", 20), Route("sms_b", "chuanglan", 100)]
    summary = prepare(root, str(path), settings(routes))
    assert {r["conn_id"]: r["prepared"] for r in summary.routes} == {"sms_a": 1, "sms_b": 1}


def test_weights_split_in_proportion_and_a_rerun_splits_the_same(tmp_path) -> None:
    root = DataRoot(tmp_path / "data")
    recipients = str(csv_file(tmp_path / "r.csv", mainland(2000)))
    routes = [Route("sms_eums", "eums", 500, weight=70),
              Route("sms_chuanglan", "chuanglan", 536, weight=30)]

    def split() -> dict[str, set[str]]:
        prepare(root, recipients, settings(routes, min_shard_rows=300))
        out: dict[str, set[str]] = {}
        for shard, conn in shards_of(root, "r1").items():
            out.setdefault(conn, set()).update(
                r["e164"] for r in read_shard(root, "r1", shard).to_pylist())
        return out

    first = split()
    assert 1300 < len(first["sms_eums"]) < 1500 and len(first["sms_chuanglan"]) == 2000 - len(
        first["sms_eums"])
    assert split() == first
    # the send tasks stay about max_shards however the campaign is routed
    assert len(shards_of(root, "r1")) <= 8 + len(routes)


def test_assign_splits_only_among_weighted_routes_that_can_take_the_row() -> None:
    eligible = np.array([[True, True, True], [False, True, True], [True, False, False]])
    points = np.array([0.99, 0.99, 0.5])
    # weights only on routes 1 and 2: row 0 goes to one of them, row 2 to its only route
    chosen = assign(eligible, [0, 1, 1], points)
    assert chosen.tolist() == [2, 2, 0]
    assert assign(eligible, [0, 0, 0], points).tolist() == [0, 1, 0]
    keys = np.arange(13800000000, 13800010000, dtype=np.int64)
    spread = Counter(assign(np.ones((len(keys), 2), bool), [1, 1],
                            split_points("c", keys)).tolist())
    assert 4700 < spread[0] < 5300
    assert not np.array_equal(split_points("c", keys), split_points("d", keys))


def test_conf_checks() -> None:
    assert conn_list("sms_eums", None) == ["sms_eums"]
    assert conn_list("sms_eums", ["sms_a", "sms_b"]) == ["sms_a", "sms_b"]
    with pytest.raises(RoutingError, match="more than once"):
        conn_list(None, ["sms_a", "sms_a"])
    with pytest.raises(RoutingError, match="not in conn_ids"):
        check_weights(["sms_a"], {"sms_b": 1})
    with pytest.raises(RoutingError, match="whole number"):
        check_weights(["sms_a"], {"sms_a": -1})
    assert check_weights(["sms_a", "sms_b"], {"sms_a": 70}) == {"sms_a": 70}
