"""factory-boy factories. Members are enrolled through the service, so every member has the
balance row that writes lock."""

from __future__ import annotations

from typing import Any

import factory

from loyalty.auth.services import create_key
from loyalty.extensions import db
from loyalty.members.lookup import find_member
from loyalty.members.models import Member
from loyalty.membership.services import EnrollMember, enroll


class MemberFactory(factory.Factory):
    class Meta:
        model = dict

    external_id = factory.Sequence(lambda n: f"cust_{n:05d}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    name = factory.Faker("name")

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Member:
        card, _ = enroll(db.session, EnrollMember(**kwargs))
        return find_member(db.session, card.external_id)


class ApiKeyFactory(factory.Factory):
    """Creates a key and returns the raw secret (what a client sends)."""

    class Meta:
        model = dict

    name = factory.Sequence(lambda n: f"key-{n}")
    scopes = ("admin",)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> str:
        _, raw = create_key(db.session, kwargs["name"], kwargs["scopes"])
        return raw


def auth(raw_key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}", **headers}
