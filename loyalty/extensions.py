"""Extensions, created unbound and attached to an app by ``create_app``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session
from flask_wtf.csrf import CSRFProtect

from loyalty.db import Base

# session.info's key for the engine every statement goes to instead of the primary.
READ_BIND = "loyalty.read_bind"


class RoutingSession(Session):
    """Flask-SQLAlchemy's session, but while a view marked ``reads_from_replica`` runs
    (loyalty.api.replica) with the replica chosen, every statement goes to the replica: the
    marker puts its engine in ``info`` for the rest of the request."""

    def get_bind(
        self,
        mapper: Any | None = None,
        clause: Any | None = None,
        bind: sa.engine.Engine | sa.engine.Connection | None = None,
        **kwargs: Any,
    ) -> sa.engine.Engine | sa.engine.Connection:
        if bind is None:
            routed: sa.engine.Engine | None = self.info.get(READ_BIND)
            if routed is not None:
                return routed
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


db = SQLAlchemy(
    model_class=Base, session_options={"class_": RoutingSession, "expire_on_commit": False}
)
# Checks nothing by itself (WTF_CSRF_CHECK_DEFAULT is off): the console calls csrf.protect().
csrf = CSRFProtect()
# The console's language and formats (its locale selector: loyalty.console.language).
babel = Babel()
