def test_member_enrolment_and_card(client, checkout):
    response = client.post("/v1/members", json={"external_id": "c1"}, headers=checkout)
    assert response.status_code == 201
    card = client.get("/v1/members/c1", headers=checkout).json
    assert card["balance"] == {"available": 0, "pending": 0, "held": 0, "expiring_soon": []}
