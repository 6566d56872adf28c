"""The sandbox's catalog endpoints in DVS's shape: pages and their headers, the lookup."""

import requests


def test_products_are_paged_with_dvs_headers(session_sandbox, shipped):
    answer = requests.get(f"{session_sandbox.url}/v1/products", params={"page": 2, "per_page": 500}, timeout=10)
    assert answer.status_code == 200
    total = len(shipped["products"])
    assert answer.headers["X-Per-Page"] == "100"  # DVS's largest page
    assert answer.headers["X-Total"] == str(total)
    assert answer.headers["X-Page"] == "2" and answer.headers["X-Prev-Page"] == "1"
    assert answer.headers["X-Next-Page"] == ""  # 117 products: two pages
    assert [p["id"] for p in answer.json()] == [p["id"] for p in shipped["products"][100:]]
    nigeria = requests.get(
        f"{session_sandbox.url}/v1/products", params={"country_iso_code": "NGA", "per_page": 100}, timeout=10
    )
    assert {p["operator"]["country"]["iso_code"] for p in nigeria.json()} == {"NGA"}
    assert requests.get(f"{session_sandbox.url}/v1/products", params={"page": 0}, timeout=10).status_code == 400


def test_the_lookup_marks_one_operator_identified(session_sandbox):
    post = requests.post(
        f"{session_sandbox.url}/v1/lookup/mobile-number", json={"mobile_number": "+254712345678"}, timeout=10
    )
    get = requests.get(f"{session_sandbox.url}/v1/lookup/mobile-number/%2B254712345678", timeout=10)
    assert post.status_code == get.status_code == 200 and post.json() == get.json()
    assert [op["name"] for op in post.json() if op["identified"]] == ["Safaricom"]
    assert len(post.json()) >= 2
    assert (
        requests.post(
            f"{session_sandbox.url}/v1/lookup/mobile-number", json={"mobile_number": "12"}, timeout=10
        ).status_code
        == 400
    )
    assert requests.delete(f"{session_sandbox.url}/v1/products", timeout=10).status_code == 405
